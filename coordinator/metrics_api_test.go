package coordinator

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
)

// startRunningJob starts a fake cluster of ids and puts the small job in
// generation 1 on workers w0 and w1 (applied on the leader).
func startRunningJob(t *testing.T, ids []string) []*testNode {
	t.Helper()
	_, nodes := startFakeCluster(t, ids, nil, nil)
	raw, err := os.ReadFile("testdata/manifests/small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := api.ParseManifest("small.yaml", raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []*Command{
		{WorkerUp: &WorkerUp{Worker: WorkerInfo{ID: "w0", Addr: "a:1"}}},
		{WorkerUp: &WorkerUp{Worker: WorkerInfo{ID: "w1", Addr: "b:1"}}},
		{Submit: &Submit{Manifest: *m}},
		{Schedule: &Schedule{Job: "small", Generation: 1, Workers: []string{"w0", "w1"}}},
	} {
		if r, err := nodes[0].srv.Apply(ctx, c); err != nil || r.Err() != nil {
			t.Fatalf("%s: %v %v", c.Kind(), err, r.Err())
		}
	}
	return nodes
}

func stepMetricsPB(from, to int64) []*loompb.StepMetrics {
	var out []*loompb.StepMetrics
	for s := from; s <= to; s++ {
		out = append(out, &loompb.StepMetrics{Step: s, UnixMs: 1000 * s, Values: map[string]float64{"loss": 5 - float64(s)/10, "lr": 1e-3}})
	}
	return out
}

// Step metrics reported to a follower reach every replica's history, the
// ones of a superseded report included, and GetMetrics serves them.
func TestGetMetricsThroughFollowers(t *testing.T) {
	nodes := startRunningJob(t, []string{"n1", "n2", "n3"})
	ctx := context.Background()
	workers := loompb.NewWorkersClient(dial(t, nodes[1].addr, workerToken))
	for _, r := range []*loompb.ReportProgressRequest{
		{WorkerId: "w0", Job: "small", Generation: 1, Step: 3, Steps: stepMetricsPB(1, 3)},
		{WorkerId: "w0", Job: "small", Generation: 1, Step: 6, Steps: stepMetricsPB(4, 6)},
	} {
		if _, err := workers.ReportProgress(ctx, r); err != nil {
			t.Fatalf("ReportProgress(step %d): %v", r.Step, err)
		}
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "history on "+n.id, func() bool {
			var last int64
			n.fsm.Read(func(s *State) { last = s.Metrics["small"].Last() })
			return last == 6
		})
	}
	jobs := loompb.NewJobsClient(dial(t, nodes[2].addr, testToken))
	resp, err := jobs.GetMetrics(ctx, &loompb.GetMetricsRequest{Job: "small", Series: []string{"loss"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Series) != 1 || resp.Series[0].Name != "loss" || len(resp.Series[0].Points) != 6 || resp.LastStep != 6 {
		t.Fatalf("GetMetrics(loss) = %v, want 6 points of loss", resp)
	}
	for i, p := range resp.Series[0].Points {
		if p.Step != int64(i+1) || p.Value != 5-float64(i+1)/10 || p.Generation != 1 {
			t.Errorf("point %d = %v", i, p)
		}
	}
	resp, err = jobs.GetMetrics(ctx, &loompb.GetMetricsRequest{Job: "small", FromStep: 2, ToStep: 5, MaxPoints: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Series) != 2 || resp.Series[0].Name != "loss" || resp.Series[1].Name != "lr" {
		t.Fatalf("GetMetrics(all) series = %v, want loss and lr", resp.Series)
	}
	if pts := resp.Series[0].Points; len(pts) != 2 || pts[0].FirstStep != 2 || pts[1].Step != 5 || pts[0].Steps+pts[1].Steps != 4 {
		t.Errorf("steps 2..5 in 2 points = %v", pts)
	}
	for _, c := range []struct {
		req  *loompb.GetMetricsRequest
		code codes.Code
		msg  string
	}{
		{&loompb.GetMetricsRequest{Job: "nope"}, codes.NotFound, `no job named "nope"`},
		{&loompb.GetMetricsRequest{Job: "small", FromStep: 9, ToStep: 3}, codes.InvalidArgument, "from_step 9 is after to_step 3"},
		{&loompb.GetMetricsRequest{Job: "small", MaxPoints: -1}, codes.InvalidArgument, "max_points -1"},
	} {
		if _, err := jobs.GetMetrics(ctx, c.req); status.Code(err) != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("GetMetrics(%v) = %v, want %s containing %q", c.req, err, c.code, c.msg)
		}
	}
	// Workers may not read it; a request over the limits is refused.
	if _, err := loompb.NewJobsClient(dial(t, nodes[0].addr, workerToken)).GetMetrics(ctx, &loompb.GetMetricsRequest{Job: "small"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("GetMetrics with the worker token = %v, want PermissionDenied", err)
	}
	if _, err := workers.ReportProgress(ctx, &loompb.ReportProgressRequest{WorkerId: "w0", Job: "small", Generation: 1, Step: 7,
		Steps: stepMetricsPB(1, MaxStepRecords+1)}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "steps has 257 entries") {
		t.Errorf("ReportProgress with %d step records = %v, want InvalidArgument naming steps", MaxStepRecords+1, err)
	}
}

// A report that supersedes an unsent one carries its step metrics along;
// the node's pending step records are bounded.
func TestPendingReportsKeepStepMetrics(t *testing.T) {
	c := newFakeCluster()
	fsm := NewFSM()
	r := c.add("n1", fsm)
	c.setLeader("n1")
	srv := NewServer(ServerConfig{NodeID: "n1", Raft: r, FSM: fsm, Logger: quietLogger}) // not Run: nothing flushes by itself
	ctx := context.Background()
	m, err := api.LoadManifest("testdata/manifests/small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Command{
		{WorkerUp: &WorkerUp{Worker: WorkerInfo{ID: "w0", Addr: "a:1"}}},
		{WorkerUp: &WorkerUp{Worker: WorkerInfo{ID: "w1", Addr: "b:1"}}},
		{Submit: &Submit{Manifest: *m}},
		{Schedule: &Schedule{Job: "small", Generation: 1, Workers: []string{"w0", "w1"}}},
	} {
		if r, err := srv.Apply(ctx, c); err != nil || r.Err() != nil {
			t.Fatalf("%s: %v %v", c.Kind(), err, r.Err())
		}
	}
	ws := workersServer{Server: srv}
	// Reports with step metrics answer once their batch is applied: each
	// runs in its own goroutine until the test flushes.
	report := func(req *loompb.ReportProgressRequest) chan error {
		ch := make(chan error, 1)
		go func() { _, err := ws.ReportProgress(ctx, req); ch <- err }()
		return ch
	}
	held := func() int {
		srv.progMu.Lock()
		defer srv.progMu.Unlock()
		return srv.pendingSteps
	}
	var waiting []chan error
	for _, st := range [][2]int64{{1, 100}, {101, 200}, {201, 300}} {
		waiting = append(waiting, report(&loompb.ReportProgressRequest{WorkerId: "w0", Job: "small", Generation: 1, Step: st[1], Steps: stepMetricsPB(st[0], st[1])}))
		want := min(int(st[1]), MaxStepRecords)
		waitFor(t, 5*time.Second, fmt.Sprintf("%d step records pending", want), func() bool { return held() == want })
	}
	srv.progMu.Lock()
	n, first := len(srv.pending["w0"].Steps), srv.pending["w0"].Steps[0].Step
	srv.progMu.Unlock()
	if n != MaxStepRecords || first != 300-MaxStepRecords+1 {
		t.Fatalf("pending w0 holds %d step records from step %d, want the newest %d (from %d)", n, first, MaxStepRecords, 300-MaxStepRecords+1)
	}
	// Many workers' records together hit the node's bound (generation 2:
	// not yet known here, so not refused as stale before that). Refusals
	// answer at once.
	var refused error
	for i := 0; refused == nil && i < 2*MaxPendingStepRecords/MaxStepRecords; i++ {
		before := held()
		ch := report(&loompb.ReportProgressRequest{WorkerId: fmt.Sprintf("x%d", i), Job: "small", Generation: 2, Step: 1, Steps: stepMetricsPB(1, MaxStepRecords)})
		waitFor(t, 5*time.Second, "the report held or refused", func() bool {
			select {
			case refused = <-ch:
				return true
			default:
				return held() > before
			}
		})
		if refused == nil {
			waiting = append(waiting, ch)
		}
	}
	if status.Code(refused) != codes.ResourceExhausted || held() > MaxPendingStepRecords {
		t.Fatalf("after many workers' records: %v with %d held, want ResourceExhausted and at most %d", refused, held(), MaxPendingStepRecords)
	}
	srv.flushProgress(ctx)
	for i, ch := range waiting {
		if err := <-ch; err != nil {
			t.Errorf("report %d after its batch was applied: %v", i, err)
		}
	}
	var last int64
	fsm.Read(func(s *State) { last = s.Metrics["small"].Last() })
	// Stage align ends at step 200: records past it (claiming stage 0) are
	// not the current generation's and are left out.
	if last != 200 || srv.pendingSteps != 0 {
		t.Errorf("after the flush: history ends at %d with %d records pending, want 200 (the stage's end) and 0", last, srv.pendingSteps)
	}
}

func TestProgressBatchWait(t *testing.T) {
	ctx := context.Background()
	b := newProgressBatch()
	b.finish(fmt.Errorf("leader gone"))
	if err := b.wait(ctx, time.Second); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "leader gone") {
		t.Errorf("wait on a failed batch = %v, want Unavailable naming the cause", err)
	}
	if err := newProgressBatch().wait(ctx, 10*time.Millisecond); status.Code(err) != codes.Unavailable {
		t.Errorf("wait on a batch never flushed = %v, want Unavailable", err)
	}
	ok := newProgressBatch()
	ok.finish(nil)
	if err := ok.wait(ctx, time.Second); err != nil {
		t.Errorf("wait on an applied batch = %v", err)
	}
}
