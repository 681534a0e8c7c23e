package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/coordinator/registry"
)

// testNode is one coordinator node of a fake-Raft cluster with a real gRPC
// server on 127.0.0.1.
type testNode struct {
	id   string
	fsm  *FSM
	raft *fakeRaft
	srv  *Server
	node *Node
	addr string
	g    *grpc.Server
}

type fakeDeleter struct {
	mu      sync.Mutex
	deleted []string
}

func (d *fakeDeleter) Delete(_ context.Context, path string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deleted = append(d.deleted, path)
	return nil
}

func (d *fakeDeleter) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.deleted...)
}

// The tokens of the test clusters, one per role.
const (
	testToken   = "s3cret" // the user's
	workerToken = "w0rker-secret"
	nodeToken   = "n0de-secret"
	adminToken  = "adm1n-secret"
)

// testAuth is the Auth of the test clusters' servers: a token per role.
func testAuth() *Auth {
	return &Auth{Tokens: map[Role]string{RoleUser: testToken, RoleWorker: workerToken, RoleNode: nodeToken, RoleAdmin: adminToken}, Logger: quietLogger}
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

func startFakeCluster(t *testing.T, ids []string, reg Registry, del ObjectDeleter) (*fakeCluster, []*testNode) {
	t.Helper()
	c := newFakeCluster()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var nodes []*testNode
	for _, id := range ids {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tn := &testNode{id: id, fsm: NewFSM(), addr: lis.Addr().String()}
		tn.raft = c.add(id, tn.fsm)
		tn.srv = NewServer(ServerConfig{NodeID: id, Raft: tn.raft, FSM: tn.fsm, ApplyTimeout: 5 * time.Second,
			ForwardDial: DialOptions(nodeToken, nil), ProgressFlush: 20 * time.Millisecond, Logger: quietLogger})
		tn.g = grpc.NewServer(testAuth().ServerOptions()...)
		tn.srv.Register(tn.g)
		tn.node, err = NewNode(NodeConfig{ID: id, APIAddr: tn.addr, Raft: tn.raft, FSM: tn.fsm, Server: tn.srv,
			Registry: reg, Deleter: del, Tick: 20 * time.Millisecond, Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() { defer wg.Done(); _ = tn.g.Serve(lis) }()
		go func() { defer wg.Done(); tn.node.Run(ctx) }()
		nodes = append(nodes, tn)
	}
	c.setLeader(ids[0])
	t.Cleanup(func() {
		cancel()
		for _, n := range nodes {
			n.g.Stop()
		}
		wg.Wait()
	})
	// Wait until every node's API address is registered.
	waitFor(t, 5*time.Second, "all nodes registered", func() bool {
		ok := true
		nodes[0].fsm.Read(func(s *State) { ok = len(s.Nodes) == len(ids) })
		return ok
	})
	return c, nodes
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dial(t *testing.T, addr, token string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, DialOptions(token, nil)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestServerSubmitThroughFollower(t *testing.T) {
	_, nodes := startFakeCluster(t, []string{"n1", "n2", "n3"}, nil, nil)
	ctx := context.Background()
	jobs := loompb.NewJobsClient(dial(t, nodes[2].addr, testToken))
	manifest, err := os.ReadFile("testdata/manifests/small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := jobs.SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: manifest, File: "small.yaml", RequestId: "r1"})
	if err != nil {
		t.Fatalf("SubmitJob via follower n3: %v", err)
	}
	if j.Name != "small" || j.State != "pending" || j.TotalSteps != 300 {
		t.Errorf("SubmitJob = name %q state %q total %d, want small pending 300", j.Name, j.State, j.TotalSteps)
	}
	// The retried request applies once: the same job, no AlreadyExists.
	if _, err := jobs.SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: manifest, RequestId: "r1"}); err != nil {
		t.Errorf("retried SubmitJob (same request id): %v, want success", err)
	}
	var events int
	nodes[0].fsm.Read(func(s *State) { events = len(s.Jobs["small"].Events) })
	if events != 1 {
		t.Errorf("after a retried submit the job has %d events, want 1", events)
	}
	for _, c := range []struct {
		name string
		req  *loompb.SubmitJobRequest
		code codes.Code
		msg  string
	}{
		{"duplicate name", &loompb.SubmitJobRequest{ManifestYaml: manifest}, codes.AlreadyExists, `a job named "small" exists`},
		{"bad field", &loompb.SubmitJobRequest{ManifestYaml: []byte("name: x\nrecipe: vila\nsteps: 3\n"), File: "x.yaml"}, codes.InvalidArgument, "x.yaml:3: steps: unknown field"},
	} {
		_, err := jobs.SubmitJob(ctx, c.req)
		if status.Code(err) != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: SubmitJob = %v, want %s containing %q", c.name, err, c.code, c.msg)
		}
	}
	// Reads are answered by every node.
	for _, n := range nodes {
		got, err := loompb.NewJobsClient(dial(t, n.addr, testToken)).GetJob(ctx, &loompb.GetJobRequest{Job: "small"})
		if err != nil || got.Name != "small" {
			t.Errorf("GetJob on %s = %v, %v; want the job", n.id, got, err)
		}
	}
	if _, err := jobs.GetJob(ctx, &loompb.GetJobRequest{Job: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetJob(nope) = %v, want NotFound", err)
	}
	if _, err := jobs.ResumeJob(ctx, &loompb.ResumeJobRequest{Job: "small", FromStep: 40}); status.Code(err) != codes.NotFound ||
		!strings.Contains(err.Error(), "no committed checkpoint at step 40") {
		t.Errorf("ResumeJob(from 40) = %v, want NotFound naming the step", err)
	}
	cj, err := jobs.CancelJob(ctx, &loompb.CancelJobRequest{Job: "small"})
	if err != nil || cj.State != "cancelled" {
		t.Errorf("CancelJob = %v, %v; want cancelled", cj, err)
	}
}

func TestServerAuth(t *testing.T) {
	_, nodes := startFakeCluster(t, []string{"n1"}, nil, nil)
	for _, c := range []struct {
		token string
		code  codes.Code
	}{{"", codes.Unauthenticated}, {"wrong", codes.Unauthenticated}, {testToken, codes.OK}} {
		_, err := loompb.NewJobsClient(dial(t, nodes[0].addr, c.token)).ListJobs(context.Background(), &loompb.ListJobsRequest{})
		if status.Code(err) != c.code {
			t.Errorf("ListJobs with token %q = %v, want %s", c.token, err, c.code)
		}
	}
	// Streams are checked too.
	st, err := loompb.NewWorkersClient(dial(t, nodes[0].addr, "")).WatchAssignment(context.Background(), &loompb.WatchAssignmentRequest{WorkerId: "w"})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("WatchAssignment without token = %v, want Unauthenticated", err)
	}
}

// TestServerJobLifecycle drives a job end to end through the worker API:
// registry → schedule → assignment stream → progress → checkpoints →
// retention deletes → completion, with writes sent to a follower.
func TestServerJobLifecycle(t *testing.T) {
	reg := registry.NewFake(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r1, err := reg.Register(ctx, registry.Worker{ID: "w1", Addr: "10.0.0.1:7000", Host: "a", GPUs: 1}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	del := &fakeDeleter{}
	_, nodes := startFakeCluster(t, []string{"n1", "n2"}, FromRegistry(reg), del)
	jobs, workers := loompb.NewJobsClient(dial(t, nodes[1].addr, testToken)), loompb.NewWorkersClient(dial(t, nodes[1].addr, workerToken))

	manifest := []byte(`name: life
recipe: qwen-vl
model: {size: tiny}
datasets: [{name: d, uri: "s3://bkt/d"}]
global_batch: 4
elastic: {min: 2, max: 2}
checkpoint: {interval: 5, keep: 1}
stages: [{name: pretrain, steps: 10}, {name: sft, steps: 5}]
`)
	if _, err := jobs.SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: manifest}); err != nil {
		t.Fatal(err)
	}
	streams := map[string]loompb.Workers_WatchAssignmentClient{}
	for _, w := range []string{"w1", "w2"} {
		st, err := workers.WatchAssignment(ctx, &loompb.WatchAssignmentRequest{WorkerId: w})
		if err != nil {
			t.Fatal(err)
		}
		streams[w] = st
	}
	watch, err := jobs.WatchJob(ctx, &loompb.WatchJobRequest{Job: "life"})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	watchDone := make(chan error, 1)
	go func() {
		for {
			ev, err := watch.Recv()
			if err == io.EOF {
				watchDone <- nil
				return
			}
			if err != nil {
				watchDone <- err
				return
			}
			if ev.Kind != "progress" {
				kinds = append(kinds, ev.Kind)
			}
		}
	}()
	recv := func(w string, wantIdle bool) *loompb.Assignment {
		t.Helper()
		for {
			a, err := streams[w].Recv()
			if err != nil {
				t.Fatalf("WatchAssignment(%s): %v", w, err)
			}
			if a.Idle == wantIdle {
				return a
			}
		}
	}
	// One worker is not enough for min 2.
	if a := recv("w1", true); !a.Idle {
		t.Fatalf("w1 first assignment = %v, want idle", a)
	}
	r2, err := reg.Register(ctx, registry.Worker{ID: "w2", Addr: "10.0.0.2:7000", Host: "b", GPUs: 1}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	a1, a2 := recv("w1", false), recv("w2", false)
	if a1.Generation != 1 || a1.Rank != 0 || a2.Rank != 1 || a1.World != 2 || a1.StopStep != 10 || a2.Peers[0].Addr != "10.0.0.1:7000" {
		t.Fatalf("assignments: w1 %v, w2 %v", a1, a2)
	}
	commit := func(w string, gen, step int64) error {
		path := fmt.Sprintf("s3://ckpt/life/%d/model.safetensors", step)
		sum := sha256.Sum256([]byte(path))
		_, err := workers.CommitCheckpoint(ctx, &loompb.CommitCheckpointRequest{WorkerId: w, Job: "life", Generation: gen, Step: step,
			SamplesConsumed: step * 4, Objects: []*loompb.CheckpointObject{{Path: path, Sha256: hex.EncodeToString(sum[:]), Size: 10}}})
		return err
	}
	for step := int64(1); step <= 5; step++ {
		for _, w := range []string{"w1", "w2"} {
			if _, err := workers.ReportProgress(ctx, &loompb.ReportProgressRequest{WorkerId: w, Job: "life", Generation: 1, Step: step,
				Losses: map[string]float64{"lm": 5 - float64(step)/2}, TokensPerSec: 100, StepTimeSeconds: 0.1, SamplesConsumed: step * 4}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 5*time.Second, "progress to reach step 5", func() bool {
		j, err := jobs.GetJob(ctx, &loompb.GetJobRequest{Job: "life"})
		return err == nil && j.Step == 5 && j.TokensPerSec == 200
	})
	// A diverged step: NaN losses (and a NaN rate from w1) go through the
	// log and show; they used to fail the whole batch's encoding.
	for _, w := range []string{"w1", "w2"} {
		tps := 100.0
		if w == "w1" {
			tps = math.NaN()
		}
		if _, err := workers.ReportProgress(ctx, &loompb.ReportProgressRequest{WorkerId: w, Job: "life", Generation: 1, Step: 6,
			Losses: map[string]float64{"lm": math.NaN(), "itc": math.Inf(1)}, TokensPerSec: tps, StepTimeSeconds: 0.1, SamplesConsumed: 24}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "a NaN loss at step 6", func() bool {
		j, err := jobs.GetJob(ctx, &loompb.GetJobRequest{Job: "life"})
		return err == nil && j.Step == 6 && math.IsNaN(j.Losses["lm"]) && math.IsInf(j.Losses["itc"], 1) && j.TokensPerSec == 100
	})
	if err := commit("w1", 1, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := workers.ReportProgress(ctx, &loompb.ReportProgressRequest{WorkerId: "w1", Job: "life", Generation: 0, Step: 1}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("ReportProgress of generation 0 = %v, want FailedPrecondition", err)
	}
	if err := commit("w1", 1, 10); err != nil {
		t.Fatal(err)
	}
	// Stage 1 ends at step 10: generation 2 runs stage sft from step 10.
	b1 := recv("w1", false)
	if b1.Generation != 2 || b1.StageName != "sft" || b1.Restore.GetStep() != 10 || b1.DataCursor != 40 || b1.StopStep != 15 {
		t.Fatalf("w1 assignment after stage 1 = %v", b1)
	}
	if err := commit("w2", 1, 12); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("commit from generation 1 after generation 2 started = %v, want FailedPrecondition", err)
	}
	// The last step's report, received just before the final commit, is
	// what the finished job shows.
	for _, w := range []string{"w1", "w2"} {
		if _, err := workers.ReportProgress(ctx, &loompb.ReportProgressRequest{WorkerId: w, Job: "life", Generation: 2, Step: 15,
			Losses: map[string]float64{"lm": 1.75}, TokensPerSec: 100, StepTimeSeconds: 0.1, SamplesConsumed: 60}); err != nil {
			t.Fatal(err)
		}
	}
	if err := commit("w2", 2, 15); err != nil {
		t.Fatal(err)
	}
	recv("w1", true)
	recv("w2", true)
	select {
	case err := <-watchDone:
		if err != nil {
			t.Fatalf("WatchJob: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("WatchJob did not end when the job finished")
	}
	want := []string{"submitted", "scheduled", "checkpoint", "checkpoint", "scheduled", "checkpoint", "succeeded"}
	if strings.Join(kinds, ",") != strings.Join(want, ",") {
		t.Errorf("WatchJob event kinds = %v, want %v", kinds, want)
	}
	// keep=1: step 5 is retired and deleted; 10 and 15 end stages.
	waitFor(t, 5*time.Second, "retired checkpoint deleted", func() bool {
		d := del.list()
		return len(d) == 1 && d[0] == "s3://ckpt/life/5/model.safetensors"
	})
	waitFor(t, 5*time.Second, "garbage purged", func() bool {
		var n int
		nodes[1].fsm.Read(func(s *State) { n = len(s.Jobs["life"].Garbage) })
		return n == 0
	})
	j, _ := jobs.GetJob(ctx, &loompb.GetJobRequest{Job: "life"})
	if j.State != "succeeded" || len(j.Checkpoints) != 2 || j.Losses["lm"] != 1.75 {
		t.Errorf("final job = state %s checkpoints %d losses %v, want succeeded, 2, lm 1.75 (the last step's)", j.State, len(j.Checkpoints), j.Losses)
	}
}

func TestNodeHTTP(t *testing.T) {
	c, nodes := startFakeCluster(t, []string{"n1"}, nil, nil)
	srv := httptest.NewServer(nodes[0].node.HTTPHandler())
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
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "leader n1"},
		{"/metrics", 200, `loom_coordinator_jobs{state="pending"} 0`},
	} {
		code, body := get(tc.path)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	c.setLeader("")
	if code, _ := get("/readyz"); code != 503 {
		t.Errorf("GET /readyz with no leader = %d, want 503", code)
	}
}

// TestNodeDutiesFollowLeadership: only the leader runs the duties, and they
// move with leadership.
func TestNodeDutiesFollowLeadership(t *testing.T) {
	c, nodes := startFakeCluster(t, []string{"n1", "n2"}, nil, nil)
	waitFor(t, 5*time.Second, "n1 leading", func() bool { return nodes[0].node.Leading() && !nodes[1].node.Leading() })
	c.setLeader("n2")
	waitFor(t, 5*time.Second, "n2 leading and n1 not", func() bool { return nodes[1].node.Leading() && !nodes[0].node.Leading() })
	c.setLeader("")
	waitFor(t, 5*time.Second, "nobody leading", func() bool { return !nodes[1].node.Leading() && !nodes[0].node.Leading() })
	// A write with no leader fails when its deadline passes, with Unavailable.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := nodes[0].srv.Apply(ctx, &Command{Cancel: &Cancel{Job: "x"}})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "no leader") {
		t.Errorf("Apply with no leader = %v, want Unavailable naming the missing leader", err)
	}
}

// TestServerLeaseLost: a worker whose registry lease is lost is dropped from
// its job, which continues on the rest as a new generation; when it comes
// back the job grows again after its next checkpoint.
func TestServerLeaseLost(t *testing.T) {
	reg := registry.NewFake(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r1, err := reg.Register(ctx, registry.Worker{ID: "w1", Addr: "10.0.0.1:7000"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := reg.Register(ctx, registry.Worker{ID: "w2", Addr: "10.0.0.2:7000"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, nodes := startFakeCluster(t, []string{"n1"}, FromRegistry(reg), nil)
	jobs, workers := loompb.NewJobsClient(dial(t, nodes[0].addr, testToken)), loompb.NewWorkersClient(dial(t, nodes[0].addr, workerToken))
	if _, err := jobs.SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: []byte(`name: lease
recipe: vila
model: {size: tiny}
datasets: [{name: d, uri: "s3://bkt/d"}]
global_batch: 2
elastic: {min: 1, max: 2}
stages: [{name: s, steps: 100}]
`)}); err != nil {
		t.Fatal(err)
	}
	job := func() *loompb.Job {
		j, err := jobs.GetJob(ctx, &loompb.GetJobRequest{Job: "lease"})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	waitFor(t, 5*time.Second, "world 2", func() bool { j := job(); return j.World == 2 && j.Generation == 1 })
	reg.Revoke(r2)
	waitFor(t, 5*time.Second, "generation 2 on w1 alone", func() bool {
		j := job()
		return j.Generation == 2 && j.World == 1 && j.Workers[0] == "w1" && j.Restarts == 1
	})
	r2b, err := reg.Register(ctx, registry.Worker{ID: "w2", Addr: "10.0.0.2:7000"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer r2b.Close()
	if _, err := workers.CommitCheckpoint(ctx, &loompb.CommitCheckpointRequest{WorkerId: "w1", Job: "lease", Generation: 2, Step: 10,
		SamplesConsumed: 20, Objects: []*loompb.CheckpointObject{{Path: "s3://ckpt/lease/10", Sha256: strings.Repeat("0", 64), Size: 1}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "growth back to 2 from step 10", func() bool {
		j := job()
		return j.Generation == 3 && j.World == 2 && j.Step == 10 && j.Restarts == 1
	})
}
