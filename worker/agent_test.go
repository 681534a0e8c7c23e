package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

const testManifest = `name: j1
recipe: blip2
model: {size: tiny}
datasets: [{name: d, uri: s3://data/d}]
global_batch: 4
elastic: {min: 1, max: 2}
checkpoint: {interval: 2, keep: 2}
stages:
  - {name: representation, steps: 6}
  - {name: generative, steps: 4}
`

// freeAddr returns a 127.0.0.1 address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type testWorker struct {
	id     string
	addr   string
	agent  *Agent
	reg    *fakeRegistrar
	made   chan *fakeTrainer
	cancel context.CancelFunc
	done   chan error
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startWorker runs an agent with the fake trainer against coord and store.
func startWorker(t *testing.T, id string, coord Coordinator, store shard.ObjectStore, delay time.Duration) *testWorker {
	t.Helper()
	return startWorkerWith(t, id, coord, store, func(made chan<- *fakeTrainer) NewTrainerFunc { return fakeTrainerFunc(delay, made) })
}

// startWorkerWith is startWorker with the trainer factory newTrainer
// builds (given the channel it must send each trainer to).
func startWorkerWith(t *testing.T, id string, coord Coordinator, store shard.ObjectStore, newTrainer func(made chan<- *fakeTrainer) NewTrainerFunc) *testWorker {
	t.Helper()
	w := &testWorker{id: id, addr: freeAddr(t), reg: &fakeRegistrar{}, made: make(chan *fakeTrainer, 16), done: make(chan error, 1)}
	ag, err := New(Config{
		Info: Info{ID: id, Addr: w.addr, Host: "h"}, Listen: w.addr, Coordinator: coord, Registrar: w.reg,
		OpenBucket:    func(string) (shard.ObjectStore, error) { return store, nil },
		DefaultBucket: "ckpt", NewTrainer: newTrainer(w.made),
		CollectiveTimeout: 5 * time.Second, DrainTimeout: 10 * time.Second, Logger: testLogger(t).With("w", id),
	})
	if err != nil {
		t.Fatal(err)
	}
	w.agent = ag
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { w.done <- ag.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(15 * time.Second):
			t.Errorf("worker %s did not stop", id)
		}
	})
	return w
}

// stop cancels the agent (drain) and returns Run's error.
func (w *testWorker) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("worker %s did not stop", w.id)
		return nil
	}
}

func assignment(gen int64, stage int32, rank int32, workers []*testWorker, restore *loompb.Checkpoint, start, stop int64) *loompb.Assignment {
	a := &loompb.Assignment{Job: "j1", Stage: stage, StageName: []string{"representation", "generative"}[stage], Generation: gen,
		Rank: rank, World: int32(len(workers)), Restore: restore, StartStep: start, StopStep: stop, ManifestYaml: []byte(testManifest)}
	if restore != nil {
		a.DataCursor = restore.SamplesConsumed
	}
	for i, w := range workers {
		a.Peers = append(a.Peers, &loompb.Peer{Rank: int32(i), WorkerId: w.id, Addr: w.addr})
	}
	return a
}

func commitProto(c *loompb.CommitCheckpointRequest, stage int32) *loompb.Checkpoint {
	return &loompb.Checkpoint{Step: c.Step, Stage: stage, Generation: c.Generation, SamplesConsumed: c.SamplesConsumed, Objects: c.Objects}
}

func TestSingleWorkerRunsStageAndCommits(t *testing.T) {
	coord := newFakeCoordinator()
	store := shard.NewMemStore()
	coord.reportDelay = 20 * time.Millisecond
	w := startWorker(t, "w0", coord, store, 0)
	coord.assign("w0", assignment(1, 0, 0, []*testWorker{w}, nil, 0, 6))
	if !coord.waitFor(10*time.Second, func(f *fakeCoordinator) bool { return len(f.commits) == 3 }) {
		t.Fatalf("commits: got %d, want 3 (steps 2, 4, 6)", len(coord.commits))
	}
	for i, c := range coord.commits {
		if want := int64(2 * (i + 1)); c.Step != want || c.SamplesConsumed != want*4 {
			t.Errorf("commit %d: step %d samples %d, want step %d samples %d", i, c.Step, c.SamplesConsumed, want, want*4)
		}
		if !strings.HasPrefix(c.Objects[0].Path, "s3://ckpt/checkpoints/j1/") {
			t.Errorf("commit %d: object path %q, want it under s3://ckpt/checkpoints/j1/", i, c.Objects[0].Path)
		}
	}
	// Each checkpoint's step (or a later one) was reported before it was
	// committed: the coordinator shows that step's losses, not the step
	// before's, even when the commit ends the job (issue 15).
	coord.mu.Lock()
	for _, c := range coord.commits {
		at := slices.Index(coord.order, fmt.Sprintf("commit %d", c.Step))
		reported := false
		for _, e := range coord.order[:max(at, 0)] {
			var n int64
			if _, err := fmt.Sscanf(e, "report %d", &n); err == nil && n >= c.Step {
				reported = true
			}
		}
		if !reported {
			t.Errorf("checkpoint at step %d committed before step %d was reported: %v", c.Step, c.Step, coord.order)
		}
	}
	coord.mu.Unlock()
	// The last step's report goes out once the stage is finished.
	if !coord.waitFor(5*time.Second, func(f *fakeCoordinator) bool {
		return len(f.reports) > 0 && f.reports[len(f.reports)-1].Step == 6
	}) {
		t.Fatalf("no progress report of step 6")
	}
	// Next stage: restored from the stage's final checkpoint.
	last := coord.lastCommit("j1")
	coord.assign("w0", assignment(2, 1, 0, []*testWorker{w}, commitProto(last, 0), 6, 10))
	if !coord.waitFor(10*time.Second, func(f *fakeCoordinator) bool { return len(f.commits) == 5 }) {
		t.Fatalf("commits after stage 2: got %d, want 5", len(coord.commits))
	}
	// Each generation's log went next to the checkpoints, for loom logs.
	for gen, want := range map[int]string{1: `"msg":"starting generation"`, 2: `"msg":"generation ended"`} {
		var got strings.Builder
		prefix := fmt.Sprintf("checkpoints/j1/logs/gen-%06d/rank-0000/", gen)
		waitForLog := time.Now().Add(5 * time.Second)
		for !strings.Contains(got.String(), want) && time.Now().Before(waitForLog) {
			got.Reset()
			store.List(context.Background(), prefix, func(o shard.ObjectInfo) error {
				b, err := store.GetRange(context.Background(), o.Key, 0, o.Size)
				got.Write(b)
				return err
			})
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(got.String(), want) || !strings.Contains(got.String(), `"job":"j1"`) {
			t.Errorf("job log of generation %d under %s: %q, want records of job j1 with %s", gen, prefix, got.String(), want)
		}
	}
	if err := w.stop(t); err != nil {
		t.Fatalf("Run after an idle drain: %v", err)
	}
	if w.reg.isLive("w0") {
		t.Errorf("registration still live after Run returned")
	}
}

func TestTwoRanksDrainStopsBothAtOneStep(t *testing.T) {
	coord := newFakeCoordinator()
	store := shard.NewMemStore()
	w0 := startWorker(t, "w0", coord, store, 30*time.Millisecond)
	w1 := startWorker(t, "w1", coord, store, 30*time.Millisecond)
	ws := []*testWorker{w0, w1}
	coord.assign("w0", assignment(1, 0, 0, ws, nil, 0, 1000))
	coord.assign("w1", assignment(1, 0, 1, ws, nil, 0, 1000))
	if !coord.waitFor(10*time.Second, func(f *fakeCoordinator) bool { return len(f.reports) >= 6 }) {
		t.Fatalf("no progress from the ring")
	}
	// SIGTERM on rank 1: both stop at the same step; rank 0 commits it.
	if err := w1.stop(t); err != nil {
		t.Fatalf("drain of rank 1: %v", err)
	}
	last := coord.lastCommit("j1")
	if last == nil {
		t.Fatal("no checkpoint committed by the drain")
	}
	t0 := <-w0.made
	t1 := <-w1.made
	if t0.step != last.Step || t1.step != last.Step {
		t.Errorf("after the drain: rank 0 at step %d, rank 1 at %d, committed %d; want all equal", t0.step, t1.step, last.Step)
	}
	if t0.weights != t1.weights {
		t.Errorf("ranks disagree on weights: %v vs %v", t0.weights, t1.weights)
	}
	// Rank 0 stays registered, waiting for its next assignment.
	if !w0.reg.isLive("w0") {
		t.Errorf("rank 0 left the registry")
	}
}

func TestNewGenerationReplacesRunningOne(t *testing.T) {
	coord := newFakeCoordinator()
	store := shard.NewMemStore()
	w0 := startWorker(t, "w0", coord, store, 20*time.Millisecond)
	w1 := startWorker(t, "w1", coord, store, 20*time.Millisecond)
	ws := []*testWorker{w0, w1}
	coord.assign("w0", assignment(1, 0, 0, ws, nil, 0, 1000))
	coord.assign("w1", assignment(1, 0, 1, ws, nil, 0, 1000))
	if !coord.waitFor(10*time.Second, func(f *fakeCoordinator) bool { return len(f.commits) >= 1 }) {
		t.Fatalf("no checkpoint from generation 1")
	}
	// w1 "dies" (its agent stops without drain); the coordinator moves w0
	// alone to generation 2 from the last committed checkpoint. w0 is in
	// a collective with w1 at that moment: it must not hang.
	w1.cancel()
	coord.mu.Lock()
	var restore *loompb.Checkpoint
	for _, c := range coord.commits {
		if restore == nil || c.Step > restore.Step {
			restore = commitProto(c, 0)
		}
	}
	coord.mu.Unlock()
	coord.assign("w0", assignment(2, 0, 0, []*testWorker{w0}, restore, restore.Step, 6))
	if !coord.waitFor(10*time.Second, func(f *fakeCoordinator) bool {
		for _, c := range f.commits {
			if c.Generation == 2 && c.Step == 6 {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("generation 2 did not reach step 6 from %d", restore.Step)
	}
	// Generation 2's trainer was restored at the checkpoint's step.
	var g2 *fakeTrainer
	for len(w0.made) > 0 {
		g2 = <-w0.made
	}
	if g2 == nil || g2.step != 6 || g2.steps != 6-restore.Step || g2.samples != 24 {
		t.Errorf("generation 2 trainer: %+v, want %d steps ending at step 6 with 24 samples", g2, 6-restore.Step)
	}
}

func TestStaleReportStopsGeneration(t *testing.T) {
	coord := newFakeCoordinator()
	store := shard.NewMemStore()
	w := startWorker(t, "w0", coord, store, 20*time.Millisecond)
	coord.assign("w0", assignment(1, 0, 0, []*testWorker{w}, nil, 0, 1000))
	if !coord.waitFor(10*time.Second, func(f *fakeCoordinator) bool { return len(f.reports) >= 2 }) {
		t.Fatal("no reports")
	}
	// The coordinator moves on without telling this worker (its stream
	// lags): the next report is refused and the generation stops.
	coord.mu.Lock()
	coord.current["j1"] = 7
	coord.mu.Unlock()
	tr := <-w.made
	deadline := time.Now().Add(10 * time.Second)
	for w.agent.metrics.generationsEnded("stale") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("generation did not stop on a stale report (trainer at step %d)", tr.step)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failingTrainerFunc is fakeTrainerFunc whose trainers fail the step that
// would reach global step failAt.
func failingTrainerFunc(failAt int64) func(made chan<- *fakeTrainer) NewTrainerFunc {
	return func(made chan<- *fakeTrainer) NewTrainerFunc {
		inner := fakeTrainerFunc(0, nil)
		return func(ctx context.Context, j trainer.Job, restore *trainer.CheckpointRef) (Trainer, error) {
			tr, err := inner(ctx, j, restore)
			if err != nil {
				return nil, err
			}
			ft := tr.(*fakeTrainer)
			ft.failAt = failAt
			made <- ft
			return ft, nil
		}
	}
}

// A trainer error ends the generation and is reported to the coordinator
// at once, with the error's text and a request id per (job, generation,
// worker); the next generation, failing the same way, is reported again
// (the coordinator's failure policy decides when to give up).
func TestTrainerFailureIsReported(t *testing.T) {
	coord := newFakeCoordinator()
	store := shard.NewMemStore()
	w := startWorkerWith(t, "w0", coord, store, failingTrainerFunc(3))
	coord.assign("w0", assignment(1, 0, 0, []*testWorker{w}, nil, 0, 1000))
	if !coord.waitFor(10*time.Second, func(f *fakeCoordinator) bool { return len(f.failures) == 1 }) {
		t.Fatalf("no failure report after the trainer failed at step 3")
	}
	coord.mu.Lock()
	got := coord.failures[0]
	coord.mu.Unlock()
	restore := commitProto(coord.lastCommit("j1"), 0)
	if got.WorkerId != "w0" || got.Job != "j1" || got.Generation != 1 || got.RequestId != "failure/j1/1/w0" ||
		!strings.Contains(got.Error, "step 3") || !strings.Contains(got.Error, "fake: step 3 fails") {
		t.Errorf("ReportFailure(%v): want worker w0, job j1, generation 1, request id failure/j1/1/w0 and the trainer's error", got)
	}
	waitFailed := func(n float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for w.agent.metrics.generationsEnded("failed") < n {
			if time.Now().After(deadline) {
				t.Fatalf("generations ended as failed: got %v, want %v", w.agent.metrics.generationsEnded("failed"), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFailed(1)
	if restore.Step != 2 {
		t.Fatalf("last commit before the failure: step %d, want 2", restore.Step)
	}
	coord.assign("w0", assignment(2, 0, 0, []*testWorker{w}, restore, restore.Step, 1000))
	if !coord.waitFor(10*time.Second, func(f *fakeCoordinator) bool { return len(f.failures) == 2 }) {
		t.Fatalf("generation 2 failed without a report")
	}
	coord.mu.Lock()
	got = coord.failures[1]
	coord.mu.Unlock()
	if got.Generation != 2 || got.RequestId != "failure/j1/2/w0" {
		t.Errorf("second report: generation %d request id %q, want 2 and failure/j1/2/w0", got.Generation, got.RequestId)
	}
	// The agent outlives its failed generations: once the second one has
	// ended, it is idle and exits at once on SIGTERM.
	waitFailed(2)
	if err := w.stop(t); err != nil {
		t.Errorf("Run after failed generations: %v", err)
	}
}

func TestReconnectsAndServesHealth(t *testing.T) {
	coord := newFakeCoordinator()
	w := startWorker(t, "w0", coord, shard.NewMemStore(), 0)
	srv := httptest.NewServer(w.agent.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitCode := func(path string, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body := get(path)
			if code == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: got %d %q, want %d", path, code, body, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCode("/healthz", 200)
	waitCode("/readyz", 200)
	coord.mu.Lock()
	before := coord.watches
	coord.mu.Unlock()
	coord.breakStreams("w0")
	if !coord.waitFor(10*time.Second, func(f *fakeCoordinator) bool { return f.watches > before }) {
		t.Fatal("the agent did not open a new assignment stream")
	}
	waitCode("/readyz", 200)
	// A lost lease is registered again.
	w.reg.lose()
	deadline := time.Now().Add(10 * time.Second)
	for w.reg.count() < 2 || !w.reg.isLive("w0") {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not register again after losing its lease")
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body := get("/metrics")
	for _, name := range []string{"loom_worker_step_seconds", "loom_worker_tokens_per_second", "loom_worker_checkpoint_upload_seconds", "loom_worker_samples_consumed"} {
		if code != 200 || !strings.Contains(body, name) {
			t.Errorf("GET /metrics: %d, missing %s", code, name)
		}
	}
}

func TestDrainTimeoutAborts(t *testing.T) {
	coord := newFakeCoordinator()
	store := shard.NewMemStore()
	w := &testWorker{id: "w0", addr: freeAddr(t), reg: &fakeRegistrar{}, done: make(chan error, 1)}
	ag, err := New(Config{Info: Info{ID: "w0", Addr: w.addr}, Listen: w.addr, Coordinator: coord, Registrar: w.reg,
		OpenBucket: func(string) (shard.ObjectStore, error) { return store, nil }, DefaultBucket: "ckpt",
		NewTrainer:   fakeTrainerFunc(time.Hour, nil), // a step that never ends
		DrainTimeout: 200 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { w.done <- ag.Run(ctx) }()
	coord.assign("w0", assignment(1, 0, 0, []*testWorker{w}, nil, 0, 10))
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-w.done:
		if err == nil || !strings.Contains(err.Error(), "did not finish within") {
			t.Errorf("Run: got %v, want a drain timeout error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain timeout")
	}
}

func TestNewChecksConfig(t *testing.T) {
	ok := Config{Info: Info{ID: "w", Addr: "a:1"}, Coordinator: newFakeCoordinator(), Registrar: &fakeRegistrar{},
		OpenBucket: func(string) (shard.ObjectStore, error) { return nil, nil }, DefaultBucket: "b"}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no id", func(c *Config) { c.Info.ID = "" }, "--id"},
		{"no addr", func(c *Config) { c.Info.Addr = "" }, "--advertise"},
		{"no coordinator", func(c *Config) { c.Coordinator = nil }, "Coordinator"},
		{"no registrar", func(c *Config) { c.Registrar = nil }, "Registrar"},
		{"no bucket", func(c *Config) { c.DefaultBucket = "" }, "--s3-bucket"},
	} {
		c := ok
		tc.mod(&c)
		_, err := New(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%s): got %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	if _, err := New(ok); err != nil {
		t.Errorf("New(valid): %v", err)
	}
}

// TestDrainOfReplacedGeneration: SIGTERM arrives while the coordinator has
// already moved the job on; the drain finds nothing to save and Run
// returns nil.
func TestDrainOfReplacedGeneration(t *testing.T) {
	coord := newFakeCoordinator()
	store := shard.NewMemStore()
	w := startWorker(t, "w0", coord, store, 100*time.Millisecond)
	coord.assign("w0", assignment(1, 0, 0, []*testWorker{w}, nil, 0, 6))
	<-w.made
	coord.mu.Lock()
	coord.current["j1"] = 2 // refuses the next report and the checkpoint
	coord.mu.Unlock()
	if err := w.stop(t); err != nil {
		t.Fatalf("Run after draining a replaced generation: %v, want nil", err)
	}
	if c := coord.lastCommit("j1"); c != nil {
		t.Errorf("a checkpoint of the replaced generation was committed: step %d", c.Step)
	}
}

// TestRefusedCredentialsStop: a coordinator that refuses the worker's
// credentials (Unauthenticated, PermissionDenied) stops the agent with an
// error that says so, instead of retrying forever; an Unavailable
// coordinator is retried.
func TestRefusedCredentialsStop(t *testing.T) {
	for _, code := range []codes.Code{codes.Unauthenticated, codes.PermissionDenied} {
		coord := newFakeCoordinator()
		coord.watchErr = status.Error(code, "coordinator: no such bearer token")
		w := startWorker(t, "w-"+strings.ToLower(code.String()), coord, shard.NewMemStore(), 0)
		select {
		case err := <-w.done:
			if err == nil || !strings.Contains(err.Error(), "refuses this worker's credentials") || !strings.Contains(err.Error(), "no such bearer token") {
				t.Errorf("%v: Run returned %v, want the refusal named", code, err)
			}
			w.done <- err // for the cleanup
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: the agent still runs 10s after the coordinator refused it", code)
		}
	}
	coord := newFakeCoordinator()
	coord.watchErr = status.Error(codes.Unavailable, "coordinator: not the leader yet")
	w := startWorker(t, "w-unavailable", coord, shard.NewMemStore(), 0)
	select {
	case err := <-w.done:
		t.Errorf("Unavailable stopped the agent: %v", err)
		w.done <- err
	case <-time.After(500 * time.Millisecond):
	}
}
