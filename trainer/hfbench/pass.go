package hfbench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loomtrain/loom/models/hf"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

// Pass kinds. Generate writes the checkpoint (an Export, untimed as a
// measurement); the others are measured.
const (
	Generate = "generate"
	RawGet   = "raw-get"   // whole-object GETs of the shards, Fetchers at a time
	Load     = "load"      // hf.Open + hf.Load through trainer.StoreSource
	LoadInto = "load-into" // the same through a StoreSource with ReadRangeInto
	RawPut   = "raw-put"   // PUTs of the same shard bytes, one at a time
	Export   = "export"    // hf.Export of the model as BF16 shards
)

// Fetchers is the number of range reads hf.Load keeps in flight; the raw
// GET baseline uses as many.
const Fetchers = 4

// PassSpec says what one pass does and where.
type PassSpec struct {
	Kind       string         `json:"kind"`
	S3         shard.S3Config `json:"s3"`
	Prefix     string         `json:"prefix"` // the checkpoint
	Out        string         `json:"out"`    // where raw-put and export write
	Model      Model          `json:"model"`
	ShardBytes int64          `json:"shard_bytes"`
}

// PassResult is one pass's measurement.
type PassResult struct {
	Kind    string  `json:"kind"`
	Seconds float64 `json:"seconds"` // the timed part
	Bytes   int64   `json:"bytes"`   // checkpoint bytes moved (whole shard files)
	// CPUSeconds is user+system time of the process over the timed part
	// (the S3 server's are not included when it runs elsewhere).
	CPUSeconds float64 `json:"cpu_seconds"`
	// HeapPeak is the high-water of Go heap object bytes (live and not yet
	// swept), sampled every 2 ms from runtime/metrics over the timed part.
	HeapPeak int64 `json:"heap_peak"`
	// RSSPeak is the process's VmHWM at the end of the pass; RSSStart its
	// VmRSS when the timed part began. Zero where /proc is missing.
	RSSPeak  int64 `json:"rss_peak"`
	RSSStart int64 `json:"rss_start"`
	// Shards and LargestShard describe the checkpoint read or written.
	Shards       int   `json:"shards"`
	LargestShard int64 `json:"largest_shard"`
	// Child is true when the pass ran in a process of its own.
	Child bool `json:"child"`
}

// RunPass runs one pass in this process. A pass in a fresh process (loom
// bench load starts one per pass) has a VmHWM of its own; in a shared
// process RunPass resets the peak by writing 5 to /proc/self/clear_refs
// after returning freed memory to the OS, so it still counts the earlier
// passes' retained pages.
func RunPass(ctx context.Context, sp PassSpec) (*PassResult, error) {
	st, err := shard.NewS3Store(sp.S3)
	if err != nil {
		return nil, err
	}
	src := trainer.StoreSource{Store: st, Prefix: sp.Prefix}
	out := trainer.StoreSource{Store: st, Prefix: sp.Out}
	res := &PassResult{Kind: sp.Kind}
	mp := sp.Model.Mapping()
	files := map[string][]byte{hf.ConfigFile: sp.Model.Config()}
	// Untimed setup.
	var shards []string
	var sizes []int64
	if sp.Kind == RawGet || sp.Kind == RawPut {
		if shards, sizes, err = shardFiles(ctx, src); err != nil {
			return nil, err
		}
	}
	var p *nn.Params
	if sp.Kind != RawGet && sp.Kind != RawPut {
		p = sp.Model.Params()
	}
	switch sp.Kind {
	case Export, Generate:
		sp.Model.Fill(p)
	case Load, LoadInto:
		// The trainer loads into a model its constructors initialised, so
		// the parameters' pages are resident before the load; so here.
		for _, t := range p.All() {
			clear(t.Data)
		}
	}
	m := startMeter()
	switch sp.Kind {
	case RawGet:
		err = rawGet(ctx, st, sp.Prefix, shards, sizes)
		res.Bytes, res.Shards, res.LargestShard = sum(sizes), len(sizes), maxOf(sizes)
	case RawPut:
		m.pause()
		var t time.Duration
		for i, f := range shards {
			b, err := src.ReadRange(ctx, f, 0, sizes[i]) // untimed: the bytes to PUT
			if err != nil {
				return nil, err
			}
			start := time.Now()
			m.resume()
			if err := out.Put(ctx, f, b); err != nil {
				return nil, err
			}
			m.pause()
			t += time.Since(start)
		}
		m.resume()
		m.elapsed = t
		res.Bytes, res.Shards, res.LargestShard = sum(sizes), len(sizes), maxOf(sizes)
	case Load, LoadInto:
		var s hf.Source = src
		if sp.Kind == LoadInto {
			s = intoSource{src, st}
		}
		var ck *hf.Checkpoint
		if ck, err = hf.Open(ctx, s); err == nil {
			_, err = hf.Load(ctx, ck, mp, p)
		}
		if err == nil {
			m.stop()
			if err = sp.Model.Check(p); err == nil {
				res.Bytes, res.Shards, res.LargestShard, err = checkpointBytes(ctx, src, ck.Files())
			}
		}
	case Export, Generate:
		dst := out
		if sp.Kind == Generate {
			dst = src
		}
		var r *hf.ExportResult
		if r, err = hf.Export(ctx, dst, mp, p, hf.ExportOptions{DType: safetensors.BF16, ShardBytes: sp.ShardBytes, Files: files}); err == nil {
			m.stop()
			res.Bytes, res.Shards, res.LargestShard, err = checkpointBytes(ctx, dst, r.Shards)
		}
	default:
		return nil, fmt.Errorf("hfbench: unknown pass %q", sp.Kind)
	}
	m.stop()
	runtime.KeepAlive(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sp.Kind, err)
	}
	res.Seconds, res.CPUSeconds, res.HeapPeak, res.RSSStart = m.elapsed.Seconds(), m.cpu, m.heapPeak, m.rssStart
	res.RSSPeak = procStatus("VmHWM")
	return res, nil
}

// intoSource is trainer.StoreSource plus hf.RangeReaderInto over the S3
// store's StreamRange: what StoreSource would give Load if it had the
// method (Load then reuses its read buffers).
type intoSource struct {
	trainer.StoreSource
	st *shard.S3Store
}

func (s intoSource) ReadRangeInto(ctx context.Context, name string, off int64, buf []byte) error {
	return s.st.StreamRange(ctx, shard.JoinKey(s.Prefix, name), off, buf, func(int) error { return nil })
}

// shardFiles lists the checkpoint's shard files (from its index) and
// their sizes.
func shardFiles(ctx context.Context, src hf.Source) ([]string, []int64, error) {
	n, err := src.Size(ctx, hf.IndexFile)
	if err != nil {
		return nil, nil, err
	}
	b, err := src.ReadRange(ctx, hf.IndexFile, 0, n)
	if err != nil {
		return nil, nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	var files []string
	for _, f := range idx.WeightMap {
		if !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	sort.Strings(files)
	_, sizes, _, err := sizesOf(ctx, src, files)
	return files, sizes, err
}

func sizesOf(ctx context.Context, src hf.Source, files []string) (int64, []int64, int64, error) {
	var sizes []int64
	for _, f := range files {
		n, err := src.Size(ctx, f)
		if err != nil {
			return 0, nil, 0, err
		}
		sizes = append(sizes, n)
	}
	return sum(sizes), sizes, maxOf(sizes), nil
}

func checkpointBytes(ctx context.Context, src hf.Source, files []string) (int64, int, int64, error) {
	total, sizes, largest, err := sizesOf(ctx, src, files)
	return total, len(sizes), largest, err
}

// rawGet GETs every shard object whole, Fetchers at a time.
func rawGet(ctx context.Context, st shard.ObjectStore, prefix string, files []string, sizes []int64) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(files))
	sem := make(chan struct{}, Fetchers)
	for i, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func(key string, size int64) {
			defer wg.Done()
			defer func() { <-sem }()
			b, err := st.GetRange(ctx, shard.JoinKey(prefix, key), 0, size)
			if err == nil && int64(len(b)) != size {
				err = fmt.Errorf("raw GET %s: %d bytes, want %d", key, len(b), size)
			}
			if err != nil {
				errs <- err
			}
		}(f, sizes[i])
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func sum(xs []int64) (s int64) {
	for _, x := range xs {
		s += x
	}
	return s
}

func maxOf(xs []int64) (m int64) {
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// meter times a pass and samples its heap; pause/resume leave untimed
// gaps (raw-put's GETs) out of the time and the CPU.
type meter struct {
	start, cpuStart time.Time
	elapsed         time.Duration
	cpu             float64
	cpu0            float64
	heapPeak        int64
	rssStart        int64
	done            chan struct{}
	wg              sync.WaitGroup
	mu              sync.Mutex
	stopped         bool
}

func startMeter() *meter {
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS()
	m := &meter{done: make(chan struct{}), rssStart: procStatus("VmRSS")}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			metrics.Read(s)
			m.mu.Lock()
			m.heapPeak = max(m.heapPeak, int64(s[0].Value.Uint64()))
			m.mu.Unlock()
			select {
			case <-m.done:
				return
			case <-tk.C:
			}
		}
	}()
	m.start, m.cpu0 = time.Now(), cpuSeconds()
	return m
}

func (m *meter) pause() {
	m.cpu += cpuSeconds() - m.cpu0
}

func (m *meter) resume() { m.cpu0 = cpuSeconds() }

func (m *meter) stop() {
	if m.stopped {
		return
	}
	m.stopped = true
	if m.elapsed == 0 {
		m.elapsed = time.Since(m.start)
		m.cpu += cpuSeconds() - m.cpu0
	}
	close(m.done)
	m.wg.Wait()
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// procStatus reads a "kB" field of /proc/self/status in bytes (0 if absent).
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return n << 10
	}
	return 0
}
