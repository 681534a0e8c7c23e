package collbench

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/grpctransport"
	"github.com/loomtrain/loom/collective/tcptransport"
)

// Transport names accepted by AllReduceOptions.Transports.
const (
	TCP       = "tcp"        // plain TCP (baseline)
	GRPC      = "grpc"       // gRPC, raw codec
	GRPCProto = "grpc-proto" // gRPC, default protobuf codec (BytesValue)

	// gRPC, raw codec, with one grpctransport data path each (GRPC is the
	// transport's default one): for side-by-side comparisons.
	GRPCBuffered = "grpc-buffered" // grpctransport.DataPathBuffered
	GRPCWritev   = "grpc-writev"   // grpctransport.DataPathWritev
	GRPCReadv    = "grpc-readv"    // grpctransport.DataPathReadv
)

// grpcDataPaths maps the transport names with an explicit data path to it.
var grpcDataPaths = map[string]string{
	GRPCBuffered: grpctransport.DataPathBuffered,
	GRPCWritev:   grpctransport.DataPathWritev,
	GRPCReadv:    grpctransport.DataPathReadv,
}

// AllReduceOptions configures AllReduce.
type AllReduceOptions struct {
	World      int      // ranks (goroutines), default 4
	Channels   int      // connections per peer, default 2
	SliceBytes int      // ring slice, default collective.DefaultSliceBytes
	Sizes      []int64  // buffer sizes in bytes per rank
	Transports []string // default tcp, grpc, grpc-proto
	Warmup     int      // untimed iterations per size, default 2
	Iters      int      // timed iterations per size, default 5 (median reported)
	P2PBytes   int64    // bytes sent per point-to-point measurement, default 256 MiB; 0 skips it
	// GRPCBuffer is the gRPC transports' read and write buffer size
	// (grpctransport.Options.BufferSize); 0 keeps the transport's default.
	GRPCBuffer int
}

func (o *AllReduceOptions) defaults() {
	if o.World == 0 {
		o.World = 4
	}
	if o.Channels == 0 {
		o.Channels = 2
	}
	if o.SliceBytes == 0 {
		o.SliceBytes = collective.DefaultSliceBytes
	}
	if len(o.Sizes) == 0 {
		o.Sizes = []int64{1 << 20, 16 << 20, 256 << 20}
	}
	if len(o.Transports) == 0 {
		o.Transports = []string{TCP, GRPC, GRPCProto}
	}
	if o.Warmup == 0 {
		o.Warmup = 2
	}
	if o.Iters == 0 {
		o.Iters = 5
	}
}

// AllReduceRow is one line of the nccl-tests-style table.
type AllReduceRow struct {
	Transport string  `json:"transport"`
	World     int     `json:"world"`
	Bytes     int64   `json:"bytes"`
	Count     int64   `json:"count"` // float32 elements
	TimeUS    float64 `json:"time_us"`
	MinUS     float64 `json:"min_us"`
	MaxUS     float64 `json:"max_us"`
	AlgBW     float64 `json:"algbw_gbps"` // Bytes / time, GB/s (1e9)
	BusBW     float64 `json:"busbw_gbps"` // algbw · 2(n−1)/n
	VsTCP     float64 `json:"busbw_vs_tcp,omitempty"`
	// CPUPerGB is the process CPU time (all ranks, user+system) per GB of
	// buffer all-reduced, over the timed iterations: what the transport
	// costs when cores, not wall time, are the scarce thing.
	CPUPerGB float64 `json:"cpu_s_per_gb"`
	// CPUVsTCP is CPUPerGB / the TCP ring's (lower is better).
	CPUVsTCP float64 `json:"cpu_vs_tcp,omitempty"`
	// GBPerCoreSecond is the bytes all-reduced per CPU second (1/CPUPerGB,
	// GB/s per fully busy core): the transport's rate per core.
	GBPerCoreSecond float64 `json:"gb_per_core_second"`
}

// P2PRow is the point-to-point rate of one transport from rank 0 to rank 1
// over all its channels at once.
type P2PRow struct {
	Transport string  `json:"transport"`
	Channels  int     `json:"channels"`
	Bytes     int64   `json:"bytes"`
	MsgBytes  int     `json:"msg_bytes"`
	GBps      float64 `json:"gbps"`
	VsTCP     float64 `json:"vs_tcp,omitempty"`
}

// AllReduceResult is what AllReduce measured.
type AllReduceResult struct {
	Options AllReduceOptions `json:"options"`
	Rows    []AllReduceRow   `json:"allreduce"`
	P2P     []P2PRow         `json:"p2p"`
}

// Ring starts world transports of the given kind on 127.0.0.1 free ports.
func Ring(kind string, world, channels int) ([]collective.Transport, error) {
	return ring(kind, world, channels, 0)
}

// ring is Ring with the gRPC buffer size (0: the transport's default).
func ring(kind string, world, channels, grpcBuffer int) ([]collective.Transport, error) {
	lis := make([]net.Listener, world)
	addrs := make([]string, world)
	for r := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lis[r], addrs[r] = l, l.Addr().String()
	}
	out := make([]collective.Transport, world)
	for r := range out {
		var tr collective.Transport
		var err error
		switch kind {
		case TCP:
			tr, err = tcptransport.New(tcptransport.Options{Rank: r, Addrs: addrs, Listener: lis[r], Channels: channels})
		case GRPC, GRPCProto, GRPCBuffered, GRPCWritev, GRPCReadv:
			codec := "raw"
			if kind == GRPCProto {
				codec = "proto"
			}
			tr, err = grpctransport.New(grpctransport.Options{Rank: r, Addrs: addrs, Listener: lis[r], Channels: channels,
				Codec: codec, BufferSize: grpcBuffer, DataPath: grpcDataPaths[kind]})
		default:
			err = fmt.Errorf("collbench: unknown transport %q (want %s, %s, %s, %s, %s or %s)", kind, TCP, GRPC, GRPCProto, GRPCBuffered, GRPCWritev, GRPCReadv)
		}
		if err != nil {
			for _, t := range out[:r] {
				t.Close()
			}
			for _, l := range lis[r:] {
				l.Close()
			}
			return nil, err
		}
		out[r] = tr
	}
	return out, nil
}

// AllReduce runs the all-reduce benchmark. Sizes are interleaved across
// transports (all transports at one size, then the next size) so that
// background load on the shared machine hits them alike.
func AllReduce(ctx context.Context, o AllReduceOptions, progress io.Writer) (*AllReduceResult, error) {
	o.defaults()
	res := &AllReduceResult{Options: o}
	rings := map[string][]*collective.Comm{}
	defer func() {
		for _, cs := range rings {
			for _, c := range cs {
				c.Close()
			}
		}
	}()
	for _, kind := range o.Transports {
		trs, err := ring(kind, o.World, o.Channels, o.GRPCBuffer)
		if err != nil {
			return nil, err
		}
		comms := make([]*collective.Comm, o.World)
		for r, tr := range trs {
			if comms[r], err = collective.New(tr, collective.Config{Job: "bench", SliceBytes: o.SliceBytes, Timeout: 60 * time.Second}); err != nil {
				return nil, err
			}
		}
		rings[kind] = comms
	}
	for _, size := range o.Sizes {
		n := int(size / 4)
		bufs := make([][]float32, o.World)
		for r := range bufs {
			bufs[r] = make([]float32, n)
			for j := range bufs[r] {
				bufs[r][j] = float32(r + 1)
			}
		}
		var tcpBus, tcpCPU float64
		for _, kind := range o.Transports {
			times := make([]time.Duration, 0, o.Iters)
			var cpu0 time.Duration
			for it := range o.Warmup + o.Iters {
				if it == o.Warmup {
					cpu0 = processCPU()
				}
				d, err := timeAllReduce(ctx, rings[kind], bufs)
				if err != nil {
					return nil, fmt.Errorf("collbench: %s all-reduce of %d bytes: %w", kind, size, err)
				}
				if it >= o.Warmup {
					times = append(times, d)
				}
			}
			cpu := processCPU() - cpu0
			slices.Sort(times)
			med := times[len(times)/2]
			row := AllReduceRow{Transport: kind, World: o.World, Bytes: size, Count: int64(n),
				TimeUS: us(med), MinUS: us(times[0]), MaxUS: us(times[len(times)-1])}
			row.AlgBW = float64(size) / med.Seconds() / 1e9
			row.BusBW = row.AlgBW * 2 * float64(o.World-1) / float64(o.World)
			row.CPUPerGB = cpu.Seconds() / (float64(o.Iters) * float64(size) / 1e9)
			if row.CPUPerGB > 0 {
				row.GBPerCoreSecond = 1 / row.CPUPerGB
			}
			if kind == TCP {
				tcpBus, tcpCPU = row.BusBW, row.CPUPerGB
			}
			if tcpBus > 0 {
				row.VsTCP = row.BusBW / tcpBus
			}
			if tcpCPU > 0 {
				row.CPUVsTCP = row.CPUPerGB / tcpCPU
			}
			res.Rows = append(res.Rows, row)
			if progress != nil {
				fmt.Fprintf(progress, "allreduce %-10s %12d B  %10.0f us  busbw %.3f GB/s\n", kind, size, row.TimeUS, row.BusBW)
			}
		}
	}
	if o.P2PBytes > 0 {
		var tcpRate float64
		for _, kind := range o.Transports {
			rate, err := p2p(ctx, kind, o.Channels, o.GRPCBuffer, o.P2PBytes, 4<<20)
			if err != nil {
				return nil, err
			}
			row := P2PRow{Transport: kind, Channels: o.Channels, Bytes: o.P2PBytes, MsgBytes: 4 << 20, GBps: rate}
			if kind == TCP {
				tcpRate = rate
			}
			if tcpRate > 0 {
				row.VsTCP = rate / tcpRate
			}
			res.P2P = append(res.P2P, row)
		}
	}
	return res, nil
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func timeAllReduce(ctx context.Context, comms []*collective.Comm, bufs [][]float32) (time.Duration, error) {
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	start := time.Now()
	for r, c := range comms {
		wg.Go(func() { errs[r] = c.AllReduce(ctx, bufs[r], collective.Mean) })
	}
	wg.Wait()
	d := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return d, nil
}

// p2p measures one transport's rate from rank 0 to rank 1 with every
// channel streaming msg-byte messages at once.
func p2p(ctx context.Context, kind string, channels, grpcBuffer int, total int64, msg int) (float64, error) {
	trs, err := ring(kind, 2, channels, grpcBuffer)
	if err != nil {
		return 0, err
	}
	defer func() {
		for _, t := range trs {
			t.Close()
		}
	}()
	per := int(total / int64(channels) / int64(msg))
	run := func(count int) (time.Duration, error) {
		var wg sync.WaitGroup
		errs := make([]error, 2*channels)
		start := time.Now()
		for ch := range channels {
			wg.Go(func() {
				buf := make([]float32, msg/4)
				for i := range count {
					if err := trs[0].Send(ctx, 1, ch, collective.Header{Job: "p2p", Seq: uint64(i)}, buf); err != nil {
						errs[ch] = err
						return
					}
				}
			})
			wg.Go(func() {
				buf := make([]float32, msg/4)
				for range count {
					if _, err := trs[1].Recv(ctx, 0, ch, buf); err != nil {
						errs[channels+ch] = err
						return
					}
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return 0, fmt.Errorf("collbench: %s point-to-point: %w", kind, err)
			}
		}
		return time.Since(start), nil
	}
	if _, err := run(max(1, per/8)); err != nil { // warm up
		return 0, err
	}
	d, err := run(per)
	if err != nil {
		return 0, err
	}
	return float64(int64(per)*int64(msg)*int64(channels)) / d.Seconds() / 1e9, nil
}

// WriteAllReduceTable prints the result like nccl-tests.
func WriteAllReduceTable(w io.Writer, res *AllReduceResult) {
	fmt.Fprintf(w, "# all-reduce (mean, float32), %d ranks on loopback, %d channels, slice %d B", res.Options.World, res.Options.Channels, res.Options.SliceBytes)
	if res.Options.GRPCBuffer != 0 {
		fmt.Fprintf(w, ", gRPC buffer %d B", res.Options.GRPCBuffer)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\tsize(B)\tcount\ttime(us)\tmin(us)\talgbw(GB/s)\tbusbw(GB/s)\tbusbw/tcp\tCPU s/GB\tCPU/tcp\tGB/s/core\t")
	for _, r := range res.Rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%.3f\t%.3f\t%.2f\t%.2f\t%.2f\t%.3f\t\n", r.Transport, r.Bytes, r.Count, r.TimeUS, r.MinUS, r.AlgBW, r.BusBW, r.VsTCP, r.CPUPerGB, r.CPUVsTCP, r.GBPerCoreSecond)
	}
	tw.Flush()
	if len(res.P2P) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "# point-to-point, rank 0 → 1")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "transport\tchannels\tbytes\tmsg(B)\tGB/s\tvs tcp\t")
		for _, r := range res.P2P {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.3f\t%.2f\t\n", r.Transport, r.Channels, r.Bytes, r.MsgBytes, r.GBps, r.VsTCP)
		}
		tw.Flush()
	}
}
