package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/collective/collbench"
)

func init() {
	benchCmd.AddCommand(newBenchAllReduceCmd(), newBenchRingAttentionCmd())
}

func newBenchAllReduceCmd() *cobra.Command {
	var (
		o          collbench.AllReduceOptions
		sizes      string
		transports string
		slice      string
		p2p        string
		grpcBuf    string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "allreduce",
		Short: "Ring all-reduce over gRPC against the same ring over raw TCP and over gRPC with protobuf",
		Long: `Runs the ring all-reduce (reduce-scatter + all-gather, float32 mean) of package
collective with every rank a goroutine of this process, connected over
loopback, once per transport:

  tcp         the identical ring schedule over plain TCP (the baseline)
  grpc        gRPC streams with the raw zero-copy codec (what Loom uses)
  grpc-proto  gRPC streams with the default protobuf codec (BytesValue)

and, to compare grpctransport's data paths side by side (grpc is the
default one, readv):

  grpc-buffered  gRPC's own read and write buffers (copies every frame)
  grpc-writev    DATA frames batched into writev without copies
  grpc-readv     grpc-writev plus one readv per received frame, no copy

and prints an nccl-tests-style table: size, count, median time, algbw
(size / time) and busbw (algbw · 2(n−1)/n), with each transport's busbw as a
ratio of the TCP ring's at the same size, and the process CPU seconds spent
per GB all-reduced (also as a ratio of TCP's) and its inverse, GB per CPU
second (the rate per fully busy core). It then measures each
transport's point-to-point rate from rank 0 to rank 1 over all channels.

All ranks share this machine's cores; on a small machine the numbers are
CPU-bound, which is why only the same-run ratios are meaningful.

Example:
  loom bench allreduce
  loom bench allreduce --sizes 16MiB,256MiB --ranks 4 --channels 2 --json
  loom bench allreduce --sizes 16MiB,256MiB --transports tcp,grpc-buffered,grpc --p2p-bytes 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Sizes, err = collbench.ParseByteList(sizes); err != nil {
				return fmt.Errorf("--sizes: %w", err)
			}
			sb, err := collbench.ParseBytes(slice)
			if err != nil {
				return fmt.Errorf("--slice: %w", err)
			}
			o.SliceBytes = int(sb)
			if o.P2PBytes, err = collbench.ParseBytes(p2p); err != nil {
				return fmt.Errorf("--p2p-bytes: %w", err)
			}
			gb, err := collbench.ParseBytes(grpcBuf)
			if err != nil {
				return fmt.Errorf("--grpc-buffer: %w", err)
			}
			o.GRPCBuffer = int(gb)
			o.Transports = strings.Split(transports, ",")
			if o.World < 2 {
				return fmt.Errorf("--ranks %d: want at least 2", o.World)
			}
			progress := cmd.ErrOrStderr()
			res, err := collbench.AllReduce(cmd.Context(), o, progress)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			collbench.WriteAllReduceTable(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.World, "ranks", 4, "ranks in the ring (goroutines of this process)")
	f.IntVar(&o.Channels, "channels", 2, "connections per peer (each runs its own ring on part of the buffer)")
	f.StringVar(&sizes, "sizes", "1MiB,16MiB,256MiB", "comma-separated buffer sizes per rank")
	f.StringVar(&transports, "transports", "tcp,grpc,grpc-proto", "transports to run; put tcp first to get ratios")
	f.StringVar(&slice, "slice", "2MiB", "largest message of the pipelined ring (the collective's default)")
	f.StringVar(&p2p, "p2p-bytes", "256MiB", "bytes for the point-to-point measurement (0 skips it)")
	f.StringVar(&grpcBuf, "grpc-buffer", "0", "gRPC read and write buffer size per connection (0: the transport's default, 1MiB)")
	f.IntVar(&o.Warmup, "warmup", 2, "untimed iterations per size")
	f.IntVar(&o.Iters, "iters", 5, "timed iterations per size (the median is reported)")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func newBenchRingAttentionCmd() *cobra.Command {
	var (
		o        collbench.RingAttnOptions
		memRanks string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "ringattention",
		Short: "Zigzag against naive causal ring attention, and memory per rank as the ring grows",
		Long: `Compares the two sequence layouts of causal ring attention (forward +
backward, package collective) at a fixed total length:

  contiguous  rank r holds the r-th block (the naive ring: the last rank
              does ~2× the average work)
  zigzag      rank r holds chunks r and 2n−1−r (every rank equal work)

For each layout it times every (rank, ring step) kernel workload alone on
one thread, and reports a model: the ring's critical path through the
ring's data dependencies (what the ring would take with a core per rank and
free communication), the zigzag speedup over contiguous it implies, and the
per-rank compute imbalance (max / mean). It also reports the wall time of a
real run with all --ranks sharing this machine's cores, which on a machine
with fewer cores than ranks cannot show the balance gain.

Then it measures: a ring of --pinned-ranks ranks (default: one per CPU this
process may use), each rank's goroutine locked to an OS thread pinned to a
CPU of its own with one kernel thread, runs both layouts alternately
--iters times after a warm-up; it prints the median wall time, its range
and the measured speedup, with the same ring's modelled critical path
beside it.

Finally it measures the heap a rank needs for one forward+backward at fixed
tokens per rank as the number of ranks doubles (it should stay flat).

Example:
  loom bench ringattention
  loom bench ringattention --ranks 8 --tokens-per-rank 1024 --json
  loom bench ringattention --pinned-ranks 2 --iters 9`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range strings.Split(memRanks, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil || n < 1 {
					return fmt.Errorf("--mem-ranks %q: want comma-separated positive integers", memRanks)
				}
				o.MemWorlds = append(o.MemWorlds, n)
			}
			if o.World < 1 || o.TokensPerRank < 2 || o.TokensPerRank%2 != 0 {
				return fmt.Errorf("--ranks %d --tokens-per-rank %d: want ranks ≥ 1 and an even token count ≥ 2", o.World, o.TokensPerRank)
			}
			res, err := collbench.RingAttention(cmd.Context(), o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			collbench.WriteRingAttnTable(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.World, "ranks", 4, "ranks for the layout comparison")
	f.IntVar(&o.TokensPerRank, "tokens-per-rank", 2048, "sequence rows per rank (even)")
	f.IntVar(&o.Heads, "heads", 4, "attention heads")
	f.IntVar(&o.HeadDim, "head-dim", 64, "dimension per head")
	f.IntVar(&o.Iters, "iters", 3, "repetitions (the median is reported)")
	f.StringVar(&memRanks, "mem-ranks", "1,2,4,8", "ring sizes for the memory measurement")
	f.IntVar(&o.MemTokens, "mem-tokens", 512, "tokens per rank for the memory measurement")
	f.IntVar(&o.PinnedWorld, "pinned-ranks", 0, "ranks of the measured one-rank-per-core comparison (0: one per usable CPU; at most that; 1 skips it)")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}
