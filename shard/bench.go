package shard

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// ReadBenchOptions configures BenchRead.
type ReadBenchOptions struct {
	Fetchers   int   // concurrent range GETs for both the reader and the raw baseline (default 4)
	Ahead      int   // if > 0, also bound the Stream's window in samples (default: bytes only, ReaderOptions.AheadBytes)
	CacheBytes int64 // reader cache (default 256 MiB)
	Window     int64 // shuffle window of the sampler order (default: rows of the largest shard)
	Seed       uint64
	Repeat     int // runs of each, alternating; the best of each is kept (default 3)
	// Reader is passed to the Reader as is, except that Fetchers and
	// CacheBytes above override its fields.
	Reader ReaderOptions
}

// ReadBenchResult compares reading a dataset through the Reader with raw
// whole-object GETs of the same shard objects, measured in the same run.
type ReadBenchResult struct {
	Bytes          int64     // dataset bytes (all shards)
	Rows           int64     // samples read per Reader pass
	RawSeconds     []float64 // each raw pass
	ReaderSeconds  []float64 // each Reader pass
	RawBytesPerSec float64   // best raw pass
	ReaderBytesPer float64   // best Reader pass (dataset bytes / time)
	Ratio          float64   // ReaderBytesPer / RawBytesPerSec
	MedianRatio    float64   // the same ratio for the median passes (steadier on a loaded machine)
	ReaderGets     int64     // range GETs of the last Reader pass
	// CPU seconds (user+system) this process spent in each pass; the S3
	// server's are not included. Empty where the platform cannot tell.
	RawCPUSeconds    []float64
	ReaderCPUSeconds []float64
	Window           int64
	Fetchers         int
}

// BenchRead measures one epoch through the Reader, in the sampler's order
// (shuffled shards, rows shuffled within Window), with prefetch, checksum
// verification and image header checks, against raw GETs of every whole
// shard object with the same concurrency. Both move the same bytes.
func BenchRead(ctx context.Context, store ObjectStore, prefix string, opts ReadBenchOptions) (*ReadBenchResult, error) {
	ix, err := ReadIndex(ctx, store, prefix)
	if err != nil {
		return nil, err
	}
	if opts.Fetchers <= 0 {
		opts.Fetchers = 4
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = 256 << 20
	}
	if opts.Repeat <= 0 {
		opts.Repeat = 3
	}
	if opts.Window <= 0 {
		for _, s := range ix.Shards {
			opts.Window = max(opts.Window, s.Rows)
		}
	}
	order, err := NewOrder(ix.ShardRows(), opts.Seed, opts.Window)
	if err != nil {
		return nil, err
	}
	res := &ReadBenchResult{Bytes: ix.Bytes, Rows: ix.Rows, Window: opts.Window, Fetchers: opts.Fetchers}
	for i := 0; i < opts.Repeat; i++ {
		c0 := processCPU()
		t, err := rawPass(ctx, store, prefix, ix, opts.Fetchers)
		if err != nil {
			return nil, err
		}
		c1 := processCPU()
		res.RawSeconds = append(res.RawSeconds, t)
		t, gets, err := readerPass(ctx, store, prefix, ix, order, opts)
		if err != nil {
			return nil, err
		}
		c2 := processCPU()
		res.ReaderSeconds = append(res.ReaderSeconds, t)
		res.ReaderGets = gets
		if c0 >= 0 {
			res.RawCPUSeconds = append(res.RawCPUSeconds, c1-c0)
			res.ReaderCPUSeconds = append(res.ReaderCPUSeconds, c2-c1)
		}
	}
	best := func(xs []float64) float64 {
		b := xs[0]
		for _, x := range xs {
			b = min(b, x)
		}
		return b
	}
	res.RawBytesPerSec = float64(ix.Bytes) / best(res.RawSeconds)
	res.ReaderBytesPer = float64(ix.Bytes) / best(res.ReaderSeconds)
	res.Ratio = res.ReaderBytesPer / res.RawBytesPerSec
	res.MedianRatio = median(res.RawSeconds) / median(res.ReaderSeconds)
	return res, nil
}

// median returns the median of xs (the mean of the middle two for an even
// count); xs is not modified.
func median(xs []float64) float64 {
	ys := slices.Clone(xs)
	slices.Sort(ys)
	n := len(ys)
	if n%2 == 1 {
		return ys[n/2]
	}
	return (ys[n/2-1] + ys[n/2]) / 2
}

func rawPass(ctx context.Context, store ObjectStore, prefix string, ix *Index, fetchers int) (float64, error) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(ix.Shards))
	sem := make(chan struct{}, fetchers)
	for _, s := range ix.Shards {
		wg.Add(1)
		sem <- struct{}{}
		go func(key string, size int64) {
			defer wg.Done()
			defer func() { <-sem }()
			data, err := store.GetRange(ctx, JoinKey(prefix, key), 0, size)
			if err == nil && int64(len(data)) != size {
				err = fmt.Errorf("raw GET %s: %d bytes, want %d", key, len(data), size)
			}
			if err != nil {
				errs <- err
			}
		}(s.Key, s.Size)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return time.Since(start).Seconds(), nil
}

func readerPass(ctx context.Context, store ObjectStore, prefix string, ix *Index, order *Order, opts ReadBenchOptions) (float64, int64, error) {
	start := time.Now()
	ro := opts.Reader
	ro.CacheBytes, ro.Fetchers = opts.CacheBytes, opts.Fetchers
	r := NewReader(store, prefix, ix, ro)
	defer r.Close()
	n := order.Len()
	st := r.Stream(ctx, func(i int64) (Loc, bool) {
		if i >= n {
			return Loc{}, false
		}
		return order.At(0, i), true
	}, opts.Ahead)
	var rows int64
	for {
		s, _, err := st.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, 0, err
		}
		if s.ID == "" {
			return 0, 0, fmt.Errorf("empty sample at %d", rows)
		}
		rows++
	}
	if rows != n {
		return 0, 0, fmt.Errorf("reader pass read %d rows, want %d", rows, n)
	}
	// Close waits for the fetchers' last bookkeeping (the stream has had
	// every batch by now); it is timed, and the GETs are counted after it.
	r.Close()
	el := time.Since(start).Seconds()
	gets, _ := r.Stats()
	return el, gets, nil
}

// IngestBenchResult compares writing a dataset through the Writer (Arrow
// encoding, hashing, upload) with raw PUTs of the resulting shard bytes.
type IngestBenchResult struct {
	Rows            int64
	Bytes           int64
	WriterSeconds   float64
	RawPutSeconds   float64
	WriterBytesPer  float64
	RawPutBytesPer  float64
	Ratio           float64
	GenerateSeconds float64 // time spent producing samples (excluded from WriterSeconds)
}

// BenchIngest writes samples as a dataset under prefix through the Writer
// and then PUTs the same shard bytes again, raw, under prefix+"-raw", one
// object at a time like the Writer; it reports both throughputs.
func BenchIngest(ctx context.Context, store ObjectStore, prefix string, kind Kind, samples []Sample, wopts WriterOptions) (*IngestBenchResult, error) {
	wopts.Kind = kind
	start := time.Now()
	w, err := NewWriter(ctx, store, prefix, wopts)
	if err != nil {
		return nil, err
	}
	for i := range samples {
		if err := w.Add(samples[i]); err != nil {
			w.Abort()
			return nil, err
		}
	}
	ix, err := w.Close()
	if err != nil {
		return nil, err
	}
	res := &IngestBenchResult{Rows: ix.Rows, Bytes: ix.Bytes, WriterSeconds: time.Since(start).Seconds()}
	shards := make([][]byte, len(ix.Shards))
	for i, s := range ix.Shards {
		if shards[i], err = store.GetRange(ctx, JoinKey(prefix, s.Key), 0, -1); err != nil {
			return nil, err
		}
	}
	start = time.Now()
	for i, s := range ix.Shards {
		if err := store.Put(ctx, JoinKey(prefix+"-raw", s.Key), bytes.NewReader(shards[i]), int64(len(shards[i]))); err != nil {
			return nil, err
		}
	}
	res.RawPutSeconds = time.Since(start).Seconds()
	res.WriterBytesPer = float64(ix.Bytes) / res.WriterSeconds
	res.RawPutBytesPer = float64(ix.Bytes) / res.RawPutSeconds
	res.Ratio = res.WriterBytesPer / res.RawPutBytesPer
	return res, nil
}
