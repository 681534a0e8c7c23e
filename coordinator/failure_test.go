package coordinator

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/coordinator/registry"
)

// certainlyStale is the follower's early check of a progress report; a
// replica that lags the leader must not refuse a report of a generation
// it has not applied yet.
func TestCertainlyStale(t *testing.T) {
	st := NewState()
	st.Workers["w1"] = &Worker{WorkerInfo: WorkerInfo{ID: "w1"}, Up: true, Job: "run"}
	st.Workers["w2"] = &Worker{WorkerInfo: WorkerInfo{ID: "w2"}, Up: true}
	st.Jobs["run"] = &Job{Name: "run", State: Running, Generation: 3, Workers: []string{"w1"}}
	st.Jobs["new"] = &Job{Name: "new", State: Pending, Generation: 0}
	st.Jobs["done"] = &Job{Name: "done", State: Succeeded, Generation: 2}
	for _, tc := range []struct {
		worker, job string
		gen         int64
		want        bool
	}{
		{"w1", "run", 3, false},     // current
		{"w1", "run", 2, true},      // an older generation
		{"w1", "run", 4, false},     // this replica has not applied generation 4 yet
		{"w2", "run", 3, true},      // not a member of the current generation
		{"w9", "run", 4, false},     // a worker and generation this replica does not know yet
		{"w1", "new", 1, false},     // the job's first schedule is not applied here yet
		{"w1", "unknown", 1, false}, // the job itself is not applied here yet
		{"w1", "done", 2, true},     // the job ended
	} {
		if got := certainlyStale(st, tc.worker, tc.job, tc.gen); got != tc.want {
			t.Errorf("certainlyStale(%s, %s, gen %d) = %v, want %v", tc.worker, tc.job, tc.gen, got, tc.want)
		}
	}
}

// A worker's failure report, sent to a follower, restarts the job at once
// (no stall timeout); once max_restarts are spent the job fails with the
// worker's error in its message.
func TestServerReportFailure(t *testing.T) {
	reg := registry.NewFake(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r1, err := reg.Register(ctx, registry.Worker{ID: "w1", Addr: "10.0.0.1:7000", Host: "a"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	_, nodes := startFakeCluster(t, []string{"n1", "n2"}, FromRegistry(reg), &fakeDeleter{})
	jobs, workers := loompb.NewJobsClient(dial(t, nodes[1].addr, testToken)), loompb.NewWorkersClient(dial(t, nodes[1].addr, workerToken))
	manifest := []byte(`name: flaky
recipe: qwen-vl
model: {size: tiny}
datasets: [{name: d, uri: "s3://bkt/d"}]
global_batch: 4
elastic: {min: 1, max: 1}
failure: {max_restarts: 1, stall_grace: 1h}
stages: [{name: pretrain, steps: 10}]
`)
	if _, err := jobs.SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: manifest}); err != nil {
		t.Fatal(err)
	}
	gen := func() int64 {
		j, err := jobs.GetJob(ctx, &loompb.GetJobRequest{Job: "flaky"})
		if err != nil {
			t.Fatal(err)
		}
		return j.Generation
	}
	waitFor(t, 5*time.Second, "generation 1", func() bool { return gen() == 1 })
	report := func(g int64, id string) error {
		_, err := workers.ReportFailure(ctx, &loompb.ReportFailureRequest{WorkerId: "w1", Job: "flaky", Generation: g,
			Error: "step 3: s3 get shard-00001.arrow: connection reset", RequestId: id})
		return err
	}
	if err := report(1, "f1"); err != nil {
		t.Fatalf("ReportFailure(generation 1): %v", err)
	}
	// The stall grace is an hour: only the report can start generation 2.
	waitFor(t, 5*time.Second, "generation 2 after the failure report", func() bool { return gen() == 2 })
	if err := report(1, "f1"); err != nil {
		t.Errorf("a retried ReportFailure (same request id) = %v, want nil", err)
	}
	if err := report(1, "f1-late"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("ReportFailure of stale generation 1 = %v, want FailedPrecondition", err)
	}
	if err := report(2, "f2"); err != nil {
		t.Fatalf("ReportFailure(generation 2): %v", err)
	}
	var j *loompb.Job
	waitFor(t, 5*time.Second, "the job to fail after max_restarts", func() bool {
		j, err = jobs.GetJob(ctx, &loompb.GetJobRequest{Job: "flaky"})
		return err == nil && j.State == "failed"
	})
	if !strings.Contains(j.Message, "w1 failed: step 3: s3 get shard-00001.arrow: connection reset") || !strings.Contains(j.Message, "max_restarts") {
		t.Errorf("failed job's message = %q, want the worker's error and the policy", j.Message)
	}
}
