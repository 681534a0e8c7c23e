package coordinator

import (
	"fmt"
	"testing"
	"time"

	"github.com/loomtrain/loom/api"
)

// scaleState builds a state with w workers and j running jobs of w/j
// workers each.
func scaleState(tb testing.TB, w, j int) *State {
	s := NewState()
	now := time.Unix(1700000000, 0)
	for i := range w {
		s.Apply(&Command{Time: now, WorkerUp: &WorkerUp{Worker: WorkerInfo{ID: fmt.Sprintf("w%05d", i), Addr: "a", Host: fmt.Sprintf("h%d", i/8)}}})
	}
	per := w / j
	for i := range j {
		m, err := api.ParseManifest("bench", []byte(fmt.Sprintf("name: job-%03d\nrecipe: vila\nmodel: {size: tiny}\ndatasets: [{name: d, uri: \"s3://bkt/d\"}]\nglobal_batch: %d\nelastic: {min: %d, max: %d}\nstages: [{name: s, steps: 100}]\n", i, per, per, per)))
		if err != nil {
			tb.Fatal(err)
		}
		s.Apply(&Command{Time: now, Submit: &Submit{Manifest: *m}})
	}
	for _, c := range Plan(s, now).Commands {
		if r := s.Apply(c); r.Code != OK {
			tb.Fatal(r.Msg)
		}
	}
	return s
}

// BenchmarkPlan is one scheduler round over 10,000 workers and 100 running
// jobs (the leader runs one per tick, holding the state's read lock).
func BenchmarkPlan(b *testing.B) {
	s := scaleState(b, 10000, 100)
	now := time.Unix(1700000001, 0)
	b.ResetTimer()
	for b.Loop() {
		if d := Plan(s, now); len(d.Commands) != 0 {
			b.Fatalf("unexpected commands: %d", len(d.Commands))
		}
	}
}

// BenchmarkApplyProgressBatch applies a batch of 10,000 progress reports.
func BenchmarkApplyProgressBatch(b *testing.B) {
	s := scaleState(b, 10000, 100)
	var reps []ProgressReport
	for _, j := range s.SortedJobs() {
		for _, w := range j.Workers {
			reps = append(reps, ProgressReport{WorkerID: w, Job: j.Name, Generation: j.Generation, Step: 1, Samples: 100})
		}
	}
	c := &Command{Time: time.Unix(1700000001, 0), Progress: &Progress{Reports: reps}}
	b.ResetTimer()
	for b.Loop() {
		if r := s.Apply(c); r.Code != OK {
			b.Fatal(r.Msg)
		}
	}
}

func TestScaleStateSchedulesEveryWorker(t *testing.T) {
	s := scaleState(t, 1000, 10)
	for _, j := range s.SortedJobs() {
		if j.State != Running || len(j.Workers) != 100 {
			t.Errorf("job %s: %s with %d workers, want running with 100", j.Name, j.State, len(j.Workers))
		}
	}
}
