package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

// fakeCoordinator is an in-memory Coordinator: tests push assignments,
// and it records progress reports and commits. Reports and commits of a
// generation other than the current one are refused like the real one.
type fakeCoordinator struct {
	mu      sync.Mutex
	current map[string]int64 // job → current generation
	streams map[string][]chan *loompb.Assignment
	last    map[string]*loompb.Assignment
	reports []*loompb.ReportProgressRequest
	commits []*loompb.CommitCheckpointRequest
	// order is "report N" and "commit N" in the order they arrived.
	order []string
	// reportDelay holds every progress report up before it arrives (a
	// slow network), set before the first assignment.
	reportDelay time.Duration
	failures    []*loompb.ReportFailureRequest
	watches     int
	changed     chan struct{}
	breakNow    map[string]bool
	// watchErr, when set, is what every assignment stream yields.
	watchErr error
}

func newFakeCoordinator() *fakeCoordinator {
	return &fakeCoordinator{current: map[string]int64{}, streams: map[string][]chan *loompb.Assignment{},
		last: map[string]*loompb.Assignment{}, changed: make(chan struct{}, 1), breakNow: map[string]bool{}}
}

func (f *fakeCoordinator) poke() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// assign sends a to worker id's stream (and remembers it for new streams).
func (f *fakeCoordinator) assign(id string, a *loompb.Assignment) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !a.Idle {
		f.current[a.Job] = a.Generation
	}
	f.last[id] = a
	for _, ch := range f.streams[id] {
		ch <- a
	}
}

// breakStreams ends worker id's open streams with Unavailable.
func (f *fakeCoordinator) breakStreams(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.streams[id] {
		close(ch)
	}
	f.streams[id] = nil
}

type fakeStream struct {
	ctx context.Context
	ch  chan *loompb.Assignment
	err error // returned by every Recv when set
}

func (s *fakeStream) Recv() (*loompb.Assignment, error) {
	if s.err != nil {
		return nil, s.err
	}
	select {
	case a, ok := <-s.ch:
		if !ok {
			return nil, status.Error(codes.Unavailable, "fake: stream broken")
		}
		return a, nil
	case <-s.ctx.Done():
		return nil, status.FromContextError(s.ctx.Err()).Err()
	}
}

func (f *fakeCoordinator) WatchAssignment(ctx context.Context, id string) (AssignmentStream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watches++
	if f.watchErr != nil {
		return &fakeStream{ctx: ctx, err: f.watchErr}, nil
	}
	ch := make(chan *loompb.Assignment, 16)
	if a := f.last[id]; a != nil {
		ch <- a
	} else {
		ch <- &loompb.Assignment{Idle: true}
	}
	f.streams[id] = append(f.streams[id], ch)
	return &fakeStream{ctx: ctx, ch: ch}, nil
}

func (f *fakeCoordinator) ReportProgress(ctx context.Context, req *loompb.ReportProgressRequest) error {
	time.Sleep(f.reportDelay)
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.poke()
	if f.current[req.Job] != req.Generation {
		return status.Errorf(codes.FailedPrecondition, "fake: generation %d is not current (%d)", req.Generation, f.current[req.Job])
	}
	f.reports = append(f.reports, req)
	f.order = append(f.order, fmt.Sprintf("report %d", req.Step))
	return nil
}

func (f *fakeCoordinator) CommitCheckpoint(ctx context.Context, req *loompb.CommitCheckpointRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.poke()
	if f.current[req.Job] != req.Generation {
		return status.Errorf(codes.FailedPrecondition, "fake: checkpoint from generation %d refused (current %d)", req.Generation, f.current[req.Job])
	}
	for _, c := range f.commits {
		if c.Job == req.Job && c.Step == req.Step {
			return nil // a retry or another rank
		}
	}
	f.commits = append(f.commits, req)
	f.order = append(f.order, fmt.Sprintf("commit %d", req.Step))
	return nil
}

func (f *fakeCoordinator) ReportFailure(ctx context.Context, req *loompb.ReportFailureRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.poke()
	if f.current[req.Job] != req.Generation {
		return status.Errorf(codes.FailedPrecondition, "fake: failure report from generation %d refused (current %d)", req.Generation, f.current[req.Job])
	}
	for _, r := range f.failures {
		if r.RequestId == req.RequestId {
			return nil // a retry
		}
	}
	f.failures = append(f.failures, req)
	return nil
}

// waitFor polls cond (under the lock) until it holds or d passes.
func (f *fakeCoordinator) waitFor(d time.Duration, cond func(f *fakeCoordinator) bool) bool {
	deadline := time.After(d)
	for {
		f.mu.Lock()
		ok := cond(f)
		f.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-f.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			return false
		}
	}
}

func (f *fakeCoordinator) lastCommit(job string) *loompb.CommitCheckpointRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var last *loompb.CommitCheckpointRequest
	for _, c := range f.commits {
		if c.Job == job && (last == nil || c.Step > last.Step) {
			last = c
		}
	}
	return last
}

// fakeRegistrar records registrations; each lease can be ended by a test.
type fakeRegistrar struct {
	mu     sync.Mutex
	leases []*fakeLease
	live   map[string]bool
}

type fakeLease struct {
	r    *fakeRegistrar
	id   string
	done chan struct{}
	once sync.Once
	err  error
}

func (r *fakeRegistrar) Register(ctx context.Context, w Info, ttl time.Duration) (Lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live == nil {
		r.live = map[string]bool{}
	}
	l := &fakeLease{r: r, id: w.ID, done: make(chan struct{})}
	r.leases = append(r.leases, l)
	r.live[w.ID] = true
	return l, nil
}

func (r *fakeRegistrar) isLive(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live[id]
}

func (r *fakeRegistrar) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.leases)
}

// lose ends the newest lease as if etcd expired it.
func (r *fakeRegistrar) lose() {
	r.mu.Lock()
	l := r.leases[len(r.leases)-1]
	r.live[l.id] = false
	r.mu.Unlock()
	l.once.Do(func() { l.err = fmt.Errorf("fake: lease lost"); close(l.done) })
}

func (l *fakeLease) Done() <-chan struct{} { return l.done }
func (l *fakeLease) Err() error {
	select {
	case <-l.done:
		return l.err
	default:
		return nil
	}
}
func (l *fakeLease) Close() error {
	l.r.mu.Lock()
	l.r.live[l.id] = false
	l.r.mu.Unlock()
	l.once.Do(func() { close(l.done) })
	return nil
}

// fakeTrainer is a deterministic stand-in for trainer.Run with the same
// contract: global batch k is the samples [k·B, (k+1)·B) of a stream of
// ids, rank r trains on its RankSlice, the "weights" are a running sum of
// the sample numbers all-reduced over the ring, checkpoints hold (step,
// samples, weights) in the store and are committed through the Committer
// by rank 0 only.
type fakeTrainer struct {
	j       trainer.Job
	step    int64 // global
	start   int64 // the stage's first global step
	samples int64
	weights float64
	batch   int
	steps   int64 // steps run by this instance
	// stepDelay slows each step (for drain and stop tests).
	stepDelay time.Duration
	// failAt makes the step that would reach this global step fail.
	failAt int64
	// deaf makes a step ignore its context while it computes, as the
	// real trainer's single-rank step does (there is no collective to
	// abort); live, when set, mirrors step for other goroutines.
	deaf bool
	live *atomic.Int64
	wg   sync.WaitGroup
	// prev is closed when the previous checkpoint is committed: like the
	// trainer, uploads commit one at a time, in step order.
	prev chan struct{}
}

type fakeState struct {
	Step    int64   `json:"step"`
	Samples int64   `json:"samples"`
	Weights float64 `json:"weights"`
}

func fakeTrainerFunc(delay time.Duration, made chan<- *fakeTrainer) NewTrainerFunc {
	return func(ctx context.Context, j trainer.Job, restore *trainer.CheckpointRef) (Trainer, error) {
		t := &fakeTrainer{j: j, batch: j.Manifest.StageGlobalBatch(j.Stage), stepDelay: delay}
		if j.Stage > 0 {
			t.start = j.Manifest.StageEnd(j.Stage - 1)
		}
		t.step = t.start
		if restore != nil {
			var key string
			for _, o := range restore.Objects {
				key = o.Path
			}
			b, err := j.Store.GetRange(ctx, key, 0, -1)
			if err != nil {
				return nil, err
			}
			var st fakeState
			if err := json.Unmarshal(b, &st); err != nil {
				return nil, err
			}
			t.step, t.samples, t.weights = st.Step, st.Samples, st.Weights
		}
		if made != nil {
			made <- t
		}
		return t, nil
	}
}

func (t *fakeTrainer) Step(ctx context.Context) (trainer.Progress, error) {
	if t.Done() {
		return trainer.Progress{}, fmt.Errorf("fake: stage done")
	}
	if t.failAt > 0 && t.step+1 == t.failAt {
		return trainer.Progress{}, fmt.Errorf("fake: step %d fails", t.failAt)
	}
	if t.stepDelay > 0 && t.deaf {
		time.Sleep(t.stepDelay)
	} else if t.stepDelay > 0 {
		select {
		case <-ctx.Done():
			return trainer.Progress{}, ctx.Err()
		case <-time.After(t.stepDelay):
		}
	}
	off, n := shard.RankSlice(t.batch, t.j.Rank, t.j.World)
	var ids []string
	grad := []float32{0}
	for i := 0; i < n; i++ {
		pos := t.samples + int64(off+i)
		ids = append(ids, fmt.Sprintf("s%05d", pos))
		grad[0] += float32(pos)
	}
	if t.j.Comm != nil {
		if err := t.j.Comm.AllReduce(ctx, grad, collective.Sum); err != nil {
			return trainer.Progress{}, err
		}
	}
	t.weights += float64(grad[0])
	t.step++
	if t.live != nil {
		t.live.Store(t.step)
	}
	t.steps++
	t.samples += int64(t.batch)
	return trainer.Progress{Stage: t.j.Stage, StageName: t.j.Manifest.Stages[t.j.Stage].Name, Step: t.step, StageStep: t.step - t.start,
		Loss: 1 / float64(t.step), Terms: map[string]float64{"lm": 1 / float64(t.step)}, Tokens: int64(n * 10),
		TokensPerSec: 1000, StepTime: time.Millisecond, Samples: t.samples, SampleIDs: ids}, nil
}

func (t *fakeTrainer) Checkpoint(ctx context.Context) (<-chan trainer.CheckpointResult, error) {
	ch := make(chan trainer.CheckpointResult, 1)
	if t.j.Rank != 0 {
		ch <- trainer.CheckpointResult{Skipped: true}
		return ch, nil
	}
	st := fakeState{Step: t.step, Samples: t.samples, Weights: t.weights}
	prev, mine := t.prev, make(chan struct{})
	t.prev = mine
	t.wg.Go(func() {
		defer close(mine)
		if prev != nil {
			<-prev
		}
		b, _ := json.Marshal(st)
		key := shard.JoinKey(t.j.CheckpointPrefix, fmt.Sprintf("step-%08d", st.Step), "state.json")
		if err := t.j.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			ch <- trainer.CheckpointResult{Err: err}
			return
		}
		ref := trainer.CheckpointRef{Stage: t.j.Stage, Step: st.Step, Generation: t.j.Generation, Samples: st.Samples,
			Objects: []trainer.CheckpointObject{{Path: key, SHA256: fmt.Sprintf("%064x", st.Step), Size: int64(len(b))}}}
		if err := t.j.Committer.Commit(ctx, ref); err != nil {
			ch <- trainer.CheckpointResult{Err: err}
			return
		}
		ch <- trainer.CheckpointResult{Ref: ref}
	})
	return ch, nil
}

func (t *fakeTrainer) Done() bool {
	return t.step >= t.j.Manifest.StageEnd(t.j.Stage) || (t.j.StopStep > 0 && t.step >= t.j.StopStep)
}

func (t *fakeTrainer) State() trainer.State {
	return trainer.State{Stage: t.j.Stage, Step: t.step, StageStep: t.step - t.start, Samples: t.samples}
}

func (t *fakeTrainer) Close() error { t.wg.Wait(); return nil }
