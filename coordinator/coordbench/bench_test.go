package coordbench

import (
	"context"
	"testing"
)

// TestRunSmall runs the benchmark at a small size, checking that it
// completes and that every number is filled in.
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Raft cluster")
	}
	r, err := Run(context.Background(), Config{Workers: 60, Jobs: 3, Rounds: 2, Concurrency: 8, NoSync: true, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.JobsAfter != 3 {
		t.Errorf("jobs after failover = %d, want 3", r.JobsAfter)
	}
	for name, v := range map[string]float64{"raft apply/s": r.RaftApplyPerSec, "fsm apply/s": r.FSMApplyPerSec,
		"submit p50": r.SubmitP50, "report p99": r.ReportP99, "reports/s": r.ReportsPerSec, "failover": r.FailoverSeconds,
		"heap": r.HeapMiB, "state": r.StateMiB} {
		if !(v > 0) {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	t.Logf("%+v", r)
}
