package collective

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ReduceOp says how AllReduce and ReduceScatter combine the ranks' buffers.
type ReduceOp uint8

// The reductions.
const (
	Sum  ReduceOp = iota // element-wise sum
	Mean                 // element-wise sum divided by the world size
)

func (o ReduceOp) String() string {
	switch o {
	case Sum:
		return "sum"
	case Mean:
		return "mean"
	}
	return fmt.Sprintf("ReduceOp(%d)", uint8(o))
}

// Clock is the source of timeouts. AfterFunc calls f in its own goroutine
// after d unless the returned stop function is called first (stop reports
// whether it prevented the call), like time.AfterFunc.
type Clock interface {
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// Defaults of Config. DefaultSliceBytes is 2 MiB: over gRPC, 2 MiB
// slices kept the 4-rank ring at ≥ 0.8× the raw-TCP ring's busbw at
// 256 MiB in 10 of 11 runs, 4 MiB slices in about half (docs/BENCHMARKS.md,
// 2026-11-27); the TCP ring's own rate was the same with either.
const (
	DefaultTimeout    = 5 * time.Second
	DefaultSliceBytes = 2 << 20
)

// Config identifies a communicator's place in a job and tunes it.
type Config struct {
	Job        string // job name carried in every message (≤ MaxJobLen bytes)
	Generation uint64 // ring generation; a message of another generation is an error
	// Timeout bounds how long one transfer may wait for a peer: a peer that
	// sends nothing, or accepts nothing, for this long fails the operation
	// with ErrTimeout. Zero means DefaultTimeout.
	Timeout time.Duration
	// SliceBytes is the largest message; transfers are pipelined slice by
	// slice. Zero means DefaultSliceBytes.
	SliceBytes int
	// Clock drives the timeouts; nil means the real clock.
	Clock Clock
}

// Comm is one rank's communicator. Its operations are collective: every rank
// of the ring calls the same ones in the same order. Operations on one Comm
// are serialised (a second call waits for the first), so a Bucketer and the
// caller may share it. The first failure aborts the Comm: it closes the
// transport, so that peers blocked on this rank fail at once instead of
// waiting out their timeouts, and every later call returns ErrAborted.
type Comm struct {
	t     Transport
	cfg   Config
	rank  int
	world int
	slice int // elements

	mu     sync.Mutex // serialises operations; guards seq, failed and scratch
	seq    uint64
	failed error
	// scratch[ch] stages reduce-scatter payloads on channel ch for
	// transports that are not ReduceReceivers; kept across operations.
	scratch [][]float32
}

// New wraps a transport in a communicator.
func New(t Transport, cfg Config) (*Comm, error) {
	if len(cfg.Job) > MaxJobLen {
		return nil, fmt.Errorf("collective: Config.Job: %d bytes, at most %d", len(cfg.Job), MaxJobLen)
	}
	if cfg.Timeout < 0 || cfg.SliceBytes < 0 {
		return nil, fmt.Errorf("collective: Config: negative Timeout %v or SliceBytes %d", cfg.Timeout, cfg.SliceBytes)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.SliceBytes == 0 {
		cfg.SliceBytes = DefaultSliceBytes
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if t.World() < 1 || t.Rank() < 0 || t.Rank() >= t.World() || t.Channels() < 1 {
		return nil, fmt.Errorf("collective: transport: rank %d, world %d, channels %d", t.Rank(), t.World(), t.Channels())
	}
	return &Comm{t: t, cfg: cfg, rank: t.Rank(), world: t.World(), slice: max(1, cfg.SliceBytes/4),
		scratch: make([][]float32, t.Channels())}, nil
}

// Rank is this communicator's rank.
func (c *Comm) Rank() int { return c.rank }

// World is the number of ranks.
func (c *Comm) World() int { return c.world }

// Config returns the configuration, defaults filled in.
func (c *Comm) Config() Config { return c.cfg }

// Close closes the transport, which also ends an operation in progress
// (with ErrClosed). Operations afterwards fail with ErrAborted.
func (c *Comm) Close() error {
	err := c.t.Close() // first: an operation in progress holds mu
	c.mu.Lock()
	if c.failed == nil {
		c.failed = ErrClosed
	}
	c.mu.Unlock()
	return err
}

// Err returns the error that aborted the communicator, or nil.
func (c *Comm) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}

// opState is one running operation: its identity and a context cancelled on
// the first error of any of its goroutines.
type opState struct {
	c      *Comm
	op     Op
	seq    uint64
	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
	err    error
}

// begin locks the communicator and starts operation op. The caller must
// call end.
func (c *Comm) begin(ctx context.Context, op Op) (*opState, error) {
	c.mu.Lock()
	if c.failed != nil {
		err := c.failed
		c.mu.Unlock()
		return nil, fmt.Errorf("collective: %s on rank %d: %w (%w)", op, c.rank, ErrAborted, err)
	}
	s := &opState{c: c, op: op, seq: c.seq}
	c.seq++
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	return s, nil
}

// fail records the operation's first error and cancels its other goroutines.
func (s *opState) fail(err error) {
	s.once.Do(func() {
		s.err = err
		s.cancel(err)
	})
}

// end finishes the operation; on error it aborts the communicator.
func (s *opState) end() error {
	s.cancel(nil)
	c := s.c
	defer c.mu.Unlock()
	if s.err == nil {
		return nil
	}
	c.failed = s.err
	if a, ok := c.t.(interface{ Abort() }); ok {
		a.Abort() // no grace period: the peers should fail now
	} else {
		c.t.Close()
	}
	return s.err
}

func (s *opState) header(step, slice uint32) Header {
	return Header{Job: s.c.cfg.Job, Generation: s.c.cfg.Generation, Seq: s.seq, Op: s.op, Step: step, Slice: slice}
}

func (s *opState) opError(peer int, dir string, err error) *OpError {
	return &OpError{Job: s.c.cfg.Job, Generation: s.c.cfg.Generation, Op: s.op, Seq: s.seq, Rank: s.c.rank,
		Peer: peer, Dir: dir, Timeout: s.c.cfg.Timeout, Err: err}
}

// withTimeout derives the context of one transfer: cancelled with cause
// ErrTimeout when the peer has not completed it within Config.Timeout.
func (s *opState) withTimeout() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(s.ctx)
	stop := s.c.cfg.Clock.AfterFunc(s.c.cfg.Timeout, func() { cancel(ErrTimeout) })
	return ctx, func() { stop(); cancel(nil) }
}

// transferErr turns a transport error into the operation's error: ErrTimeout
// when the transfer's own timer fired, the caller's context error when the
// caller cancelled, and the transport's error otherwise. (When a sibling
// goroutine failed first, this error is dropped by fail.)
func (s *opState) transferErr(ctx context.Context, peer int, dir string, err error) error {
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		var oe *OpError
		switch {
		case errors.Is(cause, ErrTimeout):
			err = ErrTimeout
		case errors.As(cause, &oe):
			return oe
		case cause != nil:
			err = cause
		}
	}
	return s.opError(peer, dir, err)
}

// send is one Transport.Send with the operation's header and timeout.
func (s *opState) send(to, ch int, step, slice uint32, payload []float32) error {
	ctx, done := s.withTimeout()
	err := s.c.t.Send(ctx, to, ch, s.header(step, slice), payload)
	if err != nil {
		err = s.transferErr(ctx, to, "send to", err)
	}
	done()
	return err
}

// recvAdd receives a reduce-scatter payload and adds it into dst, without a
// staging buffer when the transport can (ReduceReceiver); tmp is the
// staging buffer otherwise.
func (s *opState) recvAdd(from, ch int, step, slice uint32, dst []float32, tmp *[]float32) error {
	rr, ok := s.c.t.(ReduceReceiver)
	if !ok {
		if cap(*tmp) < len(dst) {
			*tmp = make([]float32, len(dst))
		}
		t := (*tmp)[:len(dst)]
		if err := s.recv(from, ch, step, slice, t); err != nil {
			return err
		}
		addTo(dst, t)
		return nil
	}
	ctx, done := s.withTimeout()
	h, err := rr.RecvAdd(ctx, from, ch, dst)
	if err != nil {
		err = s.transferErr(ctx, from, "recv from", err)
		done()
		return err
	}
	done()
	return s.checkHeader(from, h, step, slice, len(dst))
}

// recv is one Transport.Recv that checks the header against the expected
// job, generation, operation, sequence, step, slice and length.
func (s *opState) recv(from, ch int, step, slice uint32, dst []float32) error {
	ctx, done := s.withTimeout()
	h, err := s.c.t.Recv(ctx, from, ch, dst)
	if err != nil {
		err = s.transferErr(ctx, from, "recv from", err)
		done()
		return err
	}
	done()
	return s.checkHeader(from, h, step, slice, len(dst))
}

func (s *opState) checkHeader(from int, h Header, step, slice uint32, n int) error {
	want := s.header(step, slice)
	want.Len = uint32(n)
	if h != want {
		return s.opError(from, "recv from", fmt.Errorf("%w: got %s, want %s", ErrMismatch, fmtHeader(h), fmtHeader(want)))
	}
	return nil
}

func fmtHeader(h Header) string {
	return fmt.Sprintf("job %q generation %d %s #%d step %d slice %d len %d", h.Job, h.Generation, h.Op, h.Seq, h.Step, h.Slice, h.Len)
}

// runPlans executes one plan per channel over the ring, each channel with a
// sender and a receiver goroutine, and waits for all of them.
func (s *opState) runPlans(buf []float32, plans []Plan) {
	var wg sync.WaitGroup
	next, prev := (s.c.rank+1)%s.c.world, (s.c.rank+s.c.world-1)%s.c.world
	for ch, pl := range plans {
		recvDone := make(chan struct{}, len(pl.Recvs))
		sendDone := make(chan struct{}, len(pl.Sends))
		wg.Add(2)
		go func() { // sender
			defer wg.Done()
			seen := 0
			for _, st := range pl.Sends {
				for seen <= st.AfterRecv {
					select {
					case <-recvDone:
						seen++
					case <-s.ctx.Done():
						return
					}
				}
				if err := s.send(next, ch, st.Step, st.Slice, buf[st.Off:st.Off+st.Len]); err != nil {
					s.fail(err)
					return
				}
				sendDone <- struct{}{}
			}
		}()
		go func() { // receiver
			defer wg.Done()
			tmp := &s.c.scratch[ch] // this op holds c.mu
			seen := 0
			for _, st := range pl.Recvs {
				for seen <= st.AfterSend {
					select {
					case <-sendDone:
						seen++
					case <-s.ctx.Done():
						return
					}
				}
				dst := buf[st.Off : st.Off+st.Len]
				var err error
				if st.Reduce {
					err = s.recvAdd(prev, ch, st.Step, st.Slice, dst, tmp)
				} else {
					err = s.recv(prev, ch, st.Step, st.Slice, dst)
				}
				if err != nil {
					s.fail(err)
					return
				}
				if st.Scale {
					scaleBy(dst, 1/float32(s.c.world))
				}
				recvDone <- struct{}{}
			}
		}()
	}
	wg.Wait()
}

func (c *Comm) collective(ctx context.Context, op Op, kind PlanKind, buf []float32, mean bool, root int) error {
	plans := make([]Plan, c.t.Channels())
	for ch := range plans {
		pl, err := MakePlan(PlanSpec{Kind: kind, World: c.world, Rank: c.rank, Len: len(buf), Channel: ch,
			Channels: len(plans), SliceElems: c.slice, Mean: mean, Root: root})
		if err != nil {
			return err
		}
		plans[ch] = pl
	}
	s, err := c.begin(ctx, op)
	if err != nil {
		return err
	}
	s.runPlans(buf, plans)
	if s.err == nil && ctx.Err() != nil {
		s.fail(s.opError(-1, "", ctx.Err()))
	}
	return s.end()
}

// AllReduce replaces buf on every rank with the element-wise sum (or mean) of
// all ranks' buffers, which must have the same length. The ring runs
// reduce-scatter then all-gather, pipelined in slices of Config.SliceBytes
// over every transport channel. All ranks end bit-identical.
func (c *Comm) AllReduce(ctx context.Context, buf []float32, op ReduceOp) error {
	return c.collective(ctx, OpAllReduce, PlanAllReduce, buf, op == Mean, 0)
}

// ReduceScatter reduces buf across ranks so that, on return, the range
// ChunkRange(len(buf), World(), Rank()) of buf holds the sum (or mean) of
// that range over all ranks. The rest of buf is left holding partial sums.
func (c *Comm) ReduceScatter(ctx context.Context, buf []float32, op ReduceOp) error {
	return c.collective(ctx, OpReduceScatter, PlanReduceScatter, buf, op == Mean, 0)
}

// AllGather fills every rank's buf from the owners: on entry each rank has
// its own range ChunkRange(len(buf), World(), Rank()) filled; on return every
// range holds its owner's data.
func (c *Comm) AllGather(ctx context.Context, buf []float32) error {
	return c.collective(ctx, OpAllGather, PlanAllGather, buf, false, 0)
}

// Broadcast copies root's buf into every rank's buf (same length on all),
// pipelined along the ring.
func (c *Comm) Broadcast(ctx context.Context, buf []float32, root int) error {
	if root < 0 || root >= c.world {
		return fmt.Errorf("collective: broadcast: root %d outside world %d", root, c.world)
	}
	return c.collective(ctx, OpBroadcast, PlanBroadcast, buf, false, root)
}

// Barrier returns once every rank has entered it (an all-gather of one
// element per rank: each rank has then heard, through the ring, from every
// other).
func (c *Comm) Barrier(ctx context.Context) error {
	buf := make([]float32, c.world)
	return c.collective(ctx, OpBarrier, PlanAllGather, buf, false, 0)
}
