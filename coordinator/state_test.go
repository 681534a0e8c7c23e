package coordinator

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loomtrain/loom/api"
)

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []*Command{
		{ID: "a", WorkerUp: &WorkerUp{Worker: WorkerInfo{ID: "w1", Addr: "x:1"}}},
		{Progress: &Progress{Reports: []ProgressReport{{WorkerID: "w1", Job: "j", Generation: 1, Step: 3}}}},
		{Schedule: &Schedule{Job: "j", Generation: 1, Workers: []string{"w1"}}},
		{Resume: &Resume{Job: "j", FromStep: 10}},
	} {
		b, _ := c.Encode()
		f.Add(b)
	}
	f.Add([]byte{2, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		// Whatever decodes must apply without panicking, identically on
		// two replicas.
		s1, s2 := NewState(), NewState()
		r1, r2 := s1.Apply(c), s2.Apply(c)
		if r1 != r2 {
			t.Fatalf("results differ: %+v vs %+v", r1, r2)
		}
		b1, _ := s1.Marshal()
		b2, _ := s2.Marshal()
		if !bytes.Equal(b1, b2) {
			t.Fatal("states differ")
		}
	})
}

func TestFSMApplyBadEntry(t *testing.T) {
	f := NewFSM()
	r := f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: []byte{9, 1, 2}}).(Result)
	if r.Code != InvalidArgument || !strings.Contains(r.Msg, "log entry 7: command encoding version 9") {
		t.Errorf("Apply(bad entry) = %+v, want invalid-argument naming entry 7 and the version", r)
	}
	if got := f.Apply(&raft.Log{Type: raft.LogNoop}); got != nil {
		t.Errorf("Apply(noop) = %v, want nil", got)
	}
}

// TestDeterministicReplay applies a random command sequence to two states,
// one of them snapshotted and restored halfway: they end equal, byte for
// byte, and so does a third state rebuilt from the first one's snapshot.
func TestDeterministicReplay(t *testing.T) {
	m, err := api.LoadManifest("testdata/manifests/small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := NewState(), NewState()
	okKinds := map[string]int{}
	for i := range 2000 {
		now = now.Add(time.Duration(rng.IntN(5000)) * time.Millisecond)
		var c *Command
		w := fmt.Sprintf("w%d", rng.IntN(8))
		switch k := rng.IntN(10); {
		case k < 2:
			c = &Command{WorkerUp: &WorkerUp{Worker: WorkerInfo{ID: w, Addr: fmt.Sprintf("%s:%d", w, rng.IntN(2))}}}
		case k < 3:
			c = &Command{WorkerDown: &WorkerDown{WorkerID: w}}
		case k < 4:
			mm := *m
			mm.Name = fmt.Sprintf("job-%d", rng.IntN(4))
			c = &Command{ID: fmt.Sprintf("submit-%d", rng.IntN(6)), Submit: &Submit{Manifest: mm}}
		case k < 7:
			if d := Plan(a, now); len(d.Commands) > 0 {
				c = d.Commands[0]
			}
		case k < 9:
			var reps []ProgressReport
			for _, j := range a.SortedJobs() {
				for r, id := range j.Workers {
					p := ProgressReport{WorkerID: id, Job: j.Name, Generation: j.Generation, Step: j.Step + 1, StepTime: time.Second}
					if r == 0 { // rank 0's step metrics feed the history; NaN included
						loss := Float(rng.Float64())
						if rng.IntN(10) == 0 {
							loss = Float(math.NaN())
						}
						p.Steps = []StepRecord{{Step: j.Step + 1, Stage: j.Stage, Values: map[string]Float{"loss": loss}}}
					}
					reps = append(reps, p)
				}
			}
			c = &Command{Progress: &Progress{Reports: reps}}
		default:
			for _, j := range a.SortedJobs() {
				if len(j.Workers) > 0 {
					c = &Command{Commit: &Commit{WorkerID: j.Workers[0], Job: j.Name, Generation: j.Generation, Step: j.Step,
						Objects: []ObjectInfo{{Path: "p", SHA256: strings.Repeat("a", 64)}}}}
					break
				}
			}
		}
		if c == nil {
			continue
		}
		c.Time = now
		enc, _ := c.Encode()
		ca, _ := DecodeCommand(enc)
		cb, _ := DecodeCommand(enc)
		ra, rb := a.Apply(ca), b.Apply(cb)
		if ra != rb {
			t.Fatalf("command %d (%s): results differ %+v vs %+v", i, c.Kind(), ra, rb)
		}
		if ra.Code == OK {
			okKinds[c.Kind()]++
		}
		if i == 1000 {
			b = b.Clone()
		}
	}
	ba, _ := a.Marshal()
	bb, _ := b.Marshal()
	if !bytes.Equal(ba, bb) {
		t.Fatal("replicas diverged")
	}
	if len(a.Metrics) == 0 {
		t.Error("no job has a metric history; the sequence exercises too little")
	}
	for _, k := range []string{"submit", "schedule", "progress", "commit", "worker-down"} {
		if okKinds[k] == 0 {
			t.Errorf("no %s command succeeded (succeeded: %v); the sequence exercises too little", k, okKinds)
		}
	}
}

func TestReconcile(t *testing.T) {
	s := NewState()
	now := time.Unix(0, 0)
	for _, id := range []string{"a", "b", "c"} {
		s.Apply(&Command{Time: now, WorkerUp: &WorkerUp{Worker: WorkerInfo{ID: id, Addr: id + ":1"}}})
	}
	s.Apply(&Command{Time: now, WorkerDown: &WorkerDown{WorkerID: "c"}})
	got := reconcile(s, []WorkerInfo{{ID: "a", Addr: "a:1"}, {ID: "c", Addr: "c:1"}, {ID: "d", Addr: "d:1"}, {ID: "b2", Addr: "x"}})
	var kinds []string
	for _, c := range got {
		kinds = append(kinds, describeCommand(c))
	}
	want := []string{"worker-up c addr=c:1 host=", "worker-up d addr=d:1 host=", "worker-up b2 addr=x host=", "worker-down b"}
	if strings.Join(kinds, "; ") != strings.Join(want, "; ") {
		t.Errorf("reconcile =\n %s\nwant\n %s", strings.Join(kinds, "; "), strings.Join(want, "; "))
	}
}

func TestRetain(t *testing.T) {
	cps := func(steps ...int64) []Checkpoint {
		var out []Checkpoint
		for _, s := range steps {
			out = append(out, Checkpoint{Step: s})
		}
		return out
	}
	steps := func(c []Checkpoint) string {
		var s []string
		for _, x := range c {
			s = append(s, fmt.Sprint(x.Step))
		}
		return strings.Join(s, " ")
	}
	for _, c := range []struct {
		in         []Checkpoint
		keep       int
		ends       map[int64]bool
		restore    *Checkpoint
		kept, drop string
	}{
		{cps(1, 2, 3), 3, nil, nil, "1 2 3", ""},
		{cps(1, 2, 3, 4), 2, nil, nil, "3 4", "1 2"},
		{cps(1, 2, 3, 4), 1, map[int64]bool{2: true}, nil, "2 4", "1 3"},
		{cps(1, 2, 3, 4), 1, nil, &Checkpoint{Step: 1}, "1 4", "2 3"},
	} {
		k, d := Retain(c.in, c.keep, c.ends, c.restore)
		if steps(k) != c.kept || steps(d) != c.drop {
			t.Errorf("Retain(%s, keep %d, ends %v, restore %v) = kept [%s] dropped [%s], want [%s] [%s]",
				steps(c.in), c.keep, c.ends, c.restore, steps(k), steps(d), c.kept, c.drop)
		}
	}
}

// TestLossesFollowReports: the losses a job shows are those of the newest
// progress report of its current stage. A report that arrives after its
// step's checkpoint (which moved the job's step) still counts, and a new
// stage starts without the last stage's losses, throughput or step time
// (issue 15: stale per-stage losses, the previous step's loss shown as
// the final one).
func TestLossesFollowReports(t *testing.T) {
	m, err := api.LoadManifest("testdata/manifests/small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := NewState()
	now := time.Unix(0, 0)
	apply := func(c *Command) {
		t.Helper()
		c.Time = now
		if r := s.Apply(c); r.Code != OK {
			t.Fatalf("%s: %+v", c.Kind(), r)
		}
	}
	for _, id := range []string{"w1", "w2"} {
		apply(&Command{WorkerUp: &WorkerUp{Worker: WorkerInfo{ID: id, Addr: id + ":1"}}})
	}
	apply(&Command{ID: "submit", Submit: &Submit{Manifest: *m}})
	apply(&Command{Schedule: &Schedule{Job: "small", Generation: 1, Stage: 0, Workers: []string{"w1", "w2"}}})
	report := func(gen, step int64, loss float64) {
		t.Helper()
		var reps []ProgressReport
		for _, id := range []string{"w1", "w2"} {
			reps = append(reps, ProgressReport{WorkerID: id, Job: "small", Generation: gen, Step: step,
				Losses: map[string]Float{"loss": Float(loss)}, TokensPerSec: 100, StepTime: time.Second})
		}
		apply(&Command{Progress: &Progress{Reports: reps}})
	}
	commit := func(gen, step int64) {
		t.Helper()
		apply(&Command{Commit: &Commit{WorkerID: "w1", Job: "small", Generation: gen, Step: step,
			Objects: []ObjectInfo{{Path: "p", SHA256: strings.Repeat("a", 64)}}}})
	}
	j := s.Jobs["small"]
	report(1, 199, 3.5)
	commit(1, 200) // the checkpoint of step 200 before its report
	report(1, 200, 2.25)
	if got := j.Losses["loss"]; got != 2.25 || j.LossStep != 200 {
		t.Errorf("after step 200's report, which came after its checkpoint: loss %v of step %d, want 2.25 of step 200", got, j.LossStep)
	}
	report(1, 199, 9) // late and older
	if got := j.Losses["loss"]; got != 2.25 {
		t.Errorf("an older report replaced the losses: %v, want 2.25", got)
	}
	apply(&Command{Schedule: &Schedule{Job: "small", Generation: 2, Stage: 1, Workers: []string{"w1", "w2"}}})
	if j.Losses != nil || j.TokensPerSec != 0 || j.StepTime != 0 {
		t.Errorf("stage sft starts with stage align's losses %v, %v tokens/s, step time %v; want none", j.Losses, j.TokensPerSec, j.StepTime)
	}
	report(2, 201, 4.5)
	if got := j.Losses["loss"]; got != 4.5 || j.LossStep != 201 {
		t.Errorf("stage sft's first report: loss %v of step %d, want 4.5 of step 201", got, j.LossStep)
	}
}
