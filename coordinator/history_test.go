package coordinator

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/loomtrain/loom/api"
)

func rec(step int64, stage int, vals map[string]float64) StepRecord {
	v := map[string]Float{}
	for k, x := range vals {
		v[k] = Float(x)
	}
	return StepRecord{Step: step, Stage: stage, UnixMs: 1000 * step, Values: v}
}

// checkCoverage checks the invariants of a history's rows: ascending,
// contiguous from first, one stage each, N steps each, at most Width.
func checkCoverage(t *testing.T, h *MetricHistory, first, last int64) {
	t.Helper()
	if len(h.Rows) > MaxMetricRows {
		t.Fatalf("%d rows, the bound is %d", len(h.Rows), MaxMetricRows)
	}
	next := first
	for i, r := range h.Rows {
		if r.First != next || r.Step < r.First || r.N != r.Step-r.First+1 || r.N > h.Width {
			t.Fatalf("row %d covers %d..%d (N %d, width %d); want it to start at %d, N = its span, N <= width", i, r.First, r.Step, r.N, h.Width, next)
		}
		next = r.Step + 1
	}
	if next-1 != last {
		t.Fatalf("rows end at step %d, want %d", next-1, last)
	}
}

func TestHistoryKeepsEveryStepOfAShortRun(t *testing.T) {
	h := &MetricHistory{}
	for s := int64(1); s <= 100; s++ {
		h.Add(1, rec(s, 0, map[string]float64{"loss": 10 / float64(s), "lr": 1e-4}))
	}
	checkCoverage(t, h, 1, 100)
	if len(h.Rows) != 100 || h.Width != 1 {
		t.Fatalf("100 steps: %d rows of width %d, want 100 of width 1", len(h.Rows), h.Width)
	}
	names, series := h.Series(MetricQuery{Series: []string{"loss"}})
	if len(names) != 1 || names[0] != "loss" || len(series[0]) != 100 {
		t.Fatalf("Series(loss) = %v with %d points, want [loss] with 100", names, len(series[0]))
	}
	if got := series[0][49]; got.Step != 50 || got.Value != 10.0/50 {
		t.Errorf("point 50 = step %d value %g, want step 50 value %g", got.Step, got.Value, 10.0/50)
	}
}

// A long run is downsampled evenly: bounded rows, each the exact mean of
// the steps it covers, covering every step once.
func TestHistoryDownsamplesLongRuns(t *testing.T) {
	h := &MetricHistory{}
	const n = 100000
	for s := int64(1); s <= n; s++ {
		h.Add(1, rec(s, 0, map[string]float64{"v": float64(s)}))
	}
	checkCoverage(t, h, 1, n)
	if len(h.Rows) < MaxMetricRows/2 {
		t.Errorf("%d rows after %d steps; downsampling should keep at least half of %d", len(h.Rows), n, MaxMetricRows)
	}
	for i, r := range h.Rows {
		want := float64(r.First+r.Step) / 2 // the mean of First..Step
		if got := float64(r.V[0]); math.Abs(got-want) > 1e-9*want {
			t.Fatalf("row %d (%d..%d) = %g, want the mean %g", i, r.First, r.Step, got, want)
		}
	}
}

func TestHistoryNeverMergesAcrossStages(t *testing.T) {
	h := &MetricHistory{}
	ends := []int64{3000, 3001, 9000} // a one-step stage in the middle
	step := int64(0)
	for st, end := range ends {
		for step < end {
			step++
			h.Add(1, rec(step, st, map[string]float64{"loss": float64(st)}))
		}
	}
	checkCoverage(t, h, 1, 9000)
	for i, r := range h.Rows {
		if float64(r.V[0]) != float64(r.Stage) {
			t.Fatalf("row %d of stage %d holds %g: it merged steps of another stage", i, r.Stage, float64(r.V[0]))
		}
		if i > 0 && h.Rows[i-1].Stage != r.Stage && h.Rows[i-1].Step != ends[h.Rows[i-1].Stage] {
			t.Fatalf("stage %d ends at row %d's step %d, want %d", h.Rows[i-1].Stage, i-1, h.Rows[i-1].Step, ends[h.Rows[i-1].Stage])
		}
	}
	one := 1
	_, series := h.Series(MetricQuery{Stage: &one})
	if len(series) != 1 || len(series[0]) != 1 || series[0][0].Step != 3001 {
		t.Errorf("stage 1's series = %+v, want its one step 3001", series)
	}
}

// More stages than rows: the oldest rows go, instead of compacting forever.
func TestHistoryWithMoreStagesThanRows(t *testing.T) {
	h := &MetricHistory{}
	for s := int64(1); s <= MaxMetricRows+100; s++ {
		h.Add(1, rec(s, int(s), map[string]float64{"loss": 1}))
	}
	if len(h.Rows) != MaxMetricRows || h.Rows[len(h.Rows)-1].Step != MaxMetricRows+100 {
		t.Fatalf("%d rows ending at %d, want %d ending at %d", len(h.Rows), h.Last(), MaxMetricRows, MaxMetricRows+100)
	}
}

func TestHistoryDuplicatesAndRewinds(t *testing.T) {
	h := &MetricHistory{}
	for s := int64(1); s <= 20; s++ {
		h.Add(1, rec(s, 0, map[string]float64{"loss": 1}))
	}
	// A retried report of generation 1: ignored.
	h.Add(1, rec(15, 0, map[string]float64{"loss": 99}))
	checkCoverage(t, h, 1, 20)
	if v := float64(h.Rows[14].V[0]); v != 1 {
		t.Fatalf("step 15 = %g after a duplicate of it; want the first value 1", v)
	}
	// Generation 2 restarted from the checkpoint at step 10: steps 11..20
	// of generation 1 are gone, generation 2's take their place.
	h.Add(2, rec(11, 0, map[string]float64{"loss": 2}))
	checkCoverage(t, h, 1, 11)
	if r := h.Rows[10]; r.Gen != 2 || float64(r.V[0]) != 2 {
		t.Fatalf("step 11 = gen %d value %g, want gen 2 value 2", r.Gen, float64(r.V[0]))
	}
	// A record of an older generation never rewinds the history.
	h.Add(1, rec(5, 0, map[string]float64{"loss": 3}))
	checkCoverage(t, h, 1, 11)
}

func TestHistorySeriesLimit(t *testing.T) {
	h := &MetricHistory{}
	vals := map[string]float64{}
	for i := range MaxMetricSeries + 6 {
		vals[fmt.Sprintf("s%03d", i)] = float64(i)
	}
	h.Add(1, rec(1, 0, vals))
	if len(h.Names) != MaxMetricSeries || h.Dropped != 6 {
		t.Fatalf("%d names, %d dropped; want %d and 6", len(h.Names), h.Dropped, MaxMetricSeries)
	}
}

// Non-finite values survive the Raft log and snapshots: a diverged loss
// shows in the history instead of breaking the command that carries it.
func TestHistoryNonFiniteValuesSurviveJSON(t *testing.T) {
	c := &Command{Progress: &Progress{Reports: []ProgressReport{{WorkerID: "w", Job: "j", Generation: 1, Step: 1,
		Steps: []StepRecord{rec(1, 0, map[string]float64{"loss": math.NaN(), "grad_norm": math.Inf(1), "x": math.Inf(-1), "lr": 3e-4})}}}}}
	b, err := c.Encode()
	if err != nil {
		t.Fatalf("encode a command with NaN metrics: %v", err)
	}
	d, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	v := d.Progress.Reports[0].Steps[0].Values
	if !math.IsNaN(float64(v["loss"])) || !math.IsInf(float64(v["grad_norm"]), 1) || !math.IsInf(float64(v["x"]), -1) || v["lr"] != 3e-4 {
		t.Fatalf("decoded values %v, want NaN, +Inf, -Inf, 3e-4", v)
	}
	var f Float
	if err := json.Unmarshal([]byte(`"bogus"`), &f); err == nil {
		t.Error(`Float accepted "bogus"`)
	}
}

func TestDownsample(t *testing.T) {
	var pts []MetricPoint
	for s := int64(1); s <= 1000; s++ {
		st := 0
		if s > 700 {
			st = 1
		}
		pts = append(pts, MetricPoint{Step: s, First: s, Stage: st, Value: float64(s), N: 1})
	}
	for _, max := range []int{1, 2, 7, 100, 999} {
		out := Downsample(pts, max)
		limit := max
		if limit < 2 {
			limit = 2 // one point per stage at least
		}
		if len(out) > limit || len(out) == 0 {
			t.Errorf("Downsample(1000 points, %d) = %d points", max, len(out))
		}
		var sum, n float64
		next := int64(1)
		for _, p := range out {
			if p.First != next {
				t.Fatalf("max %d: point covers %d..%d, want it to start at %d", max, p.First, p.Step, next)
			}
			next = p.Step + 1
			sum += p.Value * float64(p.N)
			n += float64(p.N)
			if p.First <= 700 && p.Step > 700 {
				t.Fatalf("max %d: point %d..%d straddles the stage boundary", max, p.First, p.Step)
			}
		}
		if n != 1000 || math.Abs(sum-500500) > 1e-6 {
			t.Errorf("max %d: points weigh %g steps summing to %g, want 1000 and 500500", max, n, sum)
		}
	}
	if got := Downsample(pts, 0); len(got) != 1000 {
		t.Errorf("Downsample(max 0) = %d points, want all 1000", len(got))
	}
}

// The state records rank 0's step metrics of the current generation only,
// sums the job's tokens/s over its ranks, rewinds on a restart, and keeps
// the history through a snapshot.
func TestStateRecordsHistory(t *testing.T) {
	m, err := api.LoadManifest("testdata/manifests/small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m.Elastic.Min, m.Elastic.Max = 2, 2
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewState()
	apply := func(c *Command) Result {
		t.Helper()
		c.Time = now
		r := s.Apply(c)
		return r
	}
	must := func(c *Command) {
		t.Helper()
		if r := apply(c); r.Err() != nil {
			t.Fatalf("%s: %v", c.Kind(), r.Err())
		}
	}
	must(&Command{WorkerUp: &WorkerUp{Worker: WorkerInfo{ID: "w0", Addr: "a:1"}}})
	must(&Command{WorkerUp: &WorkerUp{Worker: WorkerInfo{ID: "w1", Addr: "b:1"}}})
	must(&Command{Submit: &Submit{Manifest: *m}})
	must(&Command{Schedule: &Schedule{Job: m.Name, Generation: 1, Stage: 0, Workers: []string{"w0", "w1"}}})
	steps := func(from, to int64, loss float64) []StepRecord {
		var out []StepRecord
		for s := from; s <= to; s++ {
			out = append(out, rec(s, 0, map[string]float64{"loss": loss, "tokens_per_sec": 100}))
		}
		return out
	}
	must(&Command{Progress: &Progress{Reports: []ProgressReport{
		{WorkerID: "w1", Job: m.Name, Generation: 1, Step: 1, TokensPerSec: 50},
	}}})
	must(&Command{Progress: &Progress{Reports: []ProgressReport{
		{WorkerID: "w0", Job: m.Name, Generation: 1, Step: 10, TokensPerSec: 100, Steps: steps(1, 10, 2)},
		{WorkerID: "w0", Job: m.Name, Generation: 0, Step: 10, Steps: steps(1, 30, 9)}, // stale generation
	}}})
	h := s.Metrics[m.Name]
	if h == nil {
		t.Fatal("no history after a report with step metrics")
	}
	checkCoverage(t, h, 1, 10)
	_, series := h.Series(MetricQuery{Series: []string{"tokens_per_sec"}})
	if v := series[0][0].Value; v != 150 {
		t.Errorf("tokens_per_sec = %g, want rank 0's 100 plus rank 1's 50", v)
	}
	// A checkpoint at 5, then a restart from it: steps after 5 are rewritten.
	must(&Command{Commit: &Commit{WorkerID: "w0", Job: m.Name, Generation: 1, Step: 5, Objects: []ObjectInfo{{Path: "p", SHA256: fmt.Sprintf("%064d", 0)}}}})
	must(&Command{Schedule: &Schedule{Job: m.Name, Generation: 2, Stage: 0, Workers: []string{"w0", "w1"}, Restart: true, Reason: "w1 lost"}})
	must(&Command{Progress: &Progress{Reports: []ProgressReport{
		{WorkerID: "w0", Job: m.Name, Generation: 2, Step: 7, Steps: append(steps(3, 5, 8), steps(6, 7, 1)...)}, // 3..5: before the restore point
	}}})
	checkCoverage(t, h, 1, 7)
	_, series = h.Series(MetricQuery{Series: []string{"loss"}})
	for _, p := range series[0] {
		want := 2.0
		if p.Step > 5 {
			want = 1
		}
		if p.Value != want {
			t.Errorf("step %d (gen %d) loss = %g, want %g", p.Step, p.Gen, p.Value, want)
		}
	}
	// A checkpoint commit carries the steps not yet confirmed (7 again: a
	// duplicate, ignored).
	must(&Command{Commit: &Commit{WorkerID: "w0", Job: m.Name, Generation: 2, Step: 9, Steps: steps(7, 9, 1),
		Objects: []ObjectInfo{{Path: "p", SHA256: fmt.Sprintf("%064d", 0)}}}})
	checkCoverage(t, h, 1, 9)
	b, err := s.Marshal()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	r, err := UnmarshalState(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := r.Marshal()
	if string(b) != string(b2) || r.Metrics[m.Name].Last() != 9 {
		t.Errorf("history changed through a snapshot (last step %d)", r.Metrics[m.Name].Last())
	}
}
