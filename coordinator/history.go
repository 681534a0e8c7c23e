package coordinator

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// The metric history of a job: the per-step scalars rank 0 reports (each
// loss term, lr, grad_norm, tokens_per_sec, step_time, comm_wait,
// data_wait), kept in the replicated state so that it survives leader
// fail-over and coordinator restarts like the rest of the job. It is
// bounded: at most MaxMetricRows rows of at most MaxMetricSeries values
// each per job. A row covers Width consecutive steps of one stage (their
// mean); when the rows fill up, adjacent rows of a stage are merged in
// pairs and Width doubles, so a long run keeps an evenly downsampled
// picture of its whole length and a short run keeps every step.
const (
	// MaxMetricRows bounds the rows of one job's history.
	MaxMetricRows = 512
	// MaxMetricSeries bounds the distinct scalar names of one job.
	MaxMetricSeries = 64
	// MaxStepRecords bounds the step records one progress report (and the
	// reports of one worker waiting for a batch) may carry.
	MaxStepRecords = 256
	// MaxPendingStepRecords bounds the step records a node holds for all
	// workers between two batches (they become one Raft log entry).
	MaxPendingStepRecords = 4096
)

// StepRecord is one step's scalars as rank 0 measured them.
type StepRecord struct {
	Step   int64            `json:"step"`
	Stage  int              `json:"stage"`
	UnixMs int64            `json:"unix_ms,omitempty"`
	Values map[string]Float `json:"values"`
}

// Float is a float64 that survives JSON (the Raft log and snapshots)
// when it is NaN or infinite: a diverged loss must reach the history and
// not break the command that carries it.
type Float float64

// MarshalJSON writes non-finite values as the strings "NaN", "+Inf", "-Inf".
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (f *Float) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("metric value %q: %w", s, err)
		}
		*f = Float(v)
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// MetricHistory is one job's downsampled history. Names lists the series
// in the order they first appeared; a row's V[i] (present when bit i of
// Has is set) is series Names[i].
type MetricHistory struct {
	Names []string    `json:"names"`
	Rows  []MetricRow `json:"rows,omitempty"`
	// Width is the number of steps a row covers at most (1, 2, 4, ...).
	Width int64 `json:"width"`
	// Dropped counts values refused because the job already had
	// MaxMetricSeries series.
	Dropped int64 `json:"dropped,omitempty"`
}

// MetricRow is the mean of the steps First..Step (N of them) of one stage.
type MetricRow struct {
	Step  int64 `json:"s"`
	First int64 `json:"f"`
	N     int64 `json:"n"`
	Stage int   `json:"st"`
	Gen   int64 `json:"g"`
	// UnixMs is when the row's last step ended (the worker's clock).
	UnixMs int64   `json:"t,omitempty"`
	Has    uint64  `json:"m"`
	V      []Float `json:"v"`
}

func (r *MetricRow) has(i int) bool { return r.Has&(1<<uint(i)) != 0 }

// Last returns the last step the history holds, or 0.
func (h *MetricHistory) Last() int64 {
	if h == nil || len(h.Rows) == 0 {
		return 0
	}
	return h.Rows[len(h.Rows)-1].Step
}

func (h *MetricHistory) column(name string) int {
	for i, n := range h.Names {
		if n == name {
			return i
		}
	}
	if len(h.Names) >= MaxMetricSeries {
		return -1
	}
	h.Names = append(h.Names, name)
	return len(h.Names) - 1
}

// Add records one step of generation gen. A step at or before the last
// one held is a duplicate when it comes from the same generation (a
// retried report: ignored) and a rewind when it comes from a newer one
// (the job restarted from an earlier checkpoint): the rows from that step
// on are dropped, so that the history shows the run the current weights
// descend from. Add is deterministic: it depends on the history and the
// record only.
func (h *MetricHistory) Add(gen int64, rec StepRecord) {
	if rec.Step <= 0 {
		return
	}
	if h.Width == 0 {
		h.Width = 1
	}
	if n := len(h.Rows); n > 0 && rec.Step <= h.Rows[n-1].Step {
		if gen <= h.Rows[n-1].Gen {
			return
		}
		// Rows covering rec.Step or later go (a merged row that straddles
		// it too: its mean mixes in discarded steps).
		keep := sort.Search(n, func(i int) bool { return h.Rows[i].Step >= rec.Step })
		h.Rows = h.Rows[:keep]
	}
	row := MetricRow{Step: rec.Step, First: rec.Step, N: 1, Stage: rec.Stage, Gen: gen, UnixMs: rec.UnixMs}
	for _, name := range metricNames(rec.Values) {
		i := h.column(name)
		if i < 0 {
			h.Dropped++
			continue
		}
		for len(row.V) <= i {
			row.V = append(row.V, 0)
		}
		row.V[i] = rec.Values[name]
		row.Has |= 1 << uint(i)
	}
	if n := len(h.Rows); n > 0 {
		last := &h.Rows[n-1]
		if last.Stage == row.Stage && last.N < h.Width && row.First == last.Step+1 {
			merge(last, &row)
			return
		}
	}
	h.Rows = append(h.Rows, row)
	for len(h.Rows) > MaxMetricRows {
		if !h.compact() {
			// Every neighbour is of another stage: only dropping helps.
			h.Rows = append(h.Rows[:0:0], h.Rows[1:]...)
		}
	}
}

// compact merges adjacent rows of one stage pairwise and doubles Width.
// It reports false when no two neighbours are of one stage (doubling
// again would not help).
func (h *MetricHistory) compact() bool {
	h.Width *= 2
	out := h.Rows[:0]
	sameStage := false
	for i := 0; i < len(h.Rows); i++ {
		r := h.Rows[i]
		if i+1 < len(h.Rows) && h.Rows[i+1].Stage == r.Stage {
			sameStage = true
			if next := &h.Rows[i+1]; r.N+next.N <= h.Width {
				merge(&r, next)
				i++
			}
		}
		out = append(out, r)
	}
	// Rows past the new end held copies that are now stale; clear them so
	// the slice's tail does not keep their value slices alive.
	for k := len(out); k < len(h.Rows); k++ {
		h.Rows[k] = MetricRow{}
	}
	h.Rows = out
	return sameStage
}

// merge folds b (which follows a) into a: step-weighted means of the
// values both have, b's value where only b has one.
func merge(a, b *MetricRow) {
	for len(a.V) < len(b.V) {
		a.V = append(a.V, 0)
	}
	for i := range b.V {
		switch {
		case !b.has(i):
		case !a.has(i):
			a.V[i] = b.V[i]
		default:
			a.V[i] = Float((float64(a.V[i])*float64(a.N) + float64(b.V[i])*float64(b.N)) / float64(a.N+b.N))
		}
	}
	a.Has |= b.Has
	a.N += b.N
	a.Step = b.Step
	a.Gen = max(a.Gen, b.Gen)
	a.UnixMs = max(a.UnixMs, b.UnixMs)
}

func metricNames(m map[string]Float) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// MetricQuery selects part of a history (see GetMetrics in api/loom.proto).
type MetricQuery struct {
	// Series are the names wanted; empty: all.
	Series []string
	// From and To bound the steps (inclusive; 0: open).
	From, To int64
	// MaxPoints bounds each series' points (0: all held).
	MaxPoints int
	// Stage keeps one stage's points (nil: all).
	Stage *int
}

// MetricPoint is one point of a served series.
type MetricPoint struct {
	Step, First int64
	Stage       int
	Gen         int64
	UnixMs      int64
	Value       float64
	N           int64
}

// Series returns the selected series by name (in name order), each
// downsampled to at most q.MaxPoints points. It does not modify h.
func (h *MetricHistory) Series(q MetricQuery) (names []string, series [][]MetricPoint) {
	if h == nil {
		return nil, nil
	}
	want := map[string]bool{}
	for _, s := range q.Series {
		want[s] = true
	}
	idx := map[string]int{}
	for i, n := range h.Names {
		if len(want) == 0 || want[n] {
			idx[n] = i
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		i := idx[n]
		var pts []MetricPoint
		for k := range h.Rows {
			r := &h.Rows[k]
			if !r.has(i) || (q.From > 0 && r.Step < q.From) || (q.To > 0 && r.First > q.To) || (q.Stage != nil && r.Stage != *q.Stage) {
				continue
			}
			pts = append(pts, MetricPoint{Step: r.Step, First: r.First, Stage: r.Stage, Gen: r.Gen, UnixMs: r.UnixMs, Value: float64(r.V[i]), N: r.N})
		}
		series = append(series, Downsample(pts, q.MaxPoints))
	}
	return names, series
}

// Downsample merges adjacent points of one stage (step-weighted means)
// until at most max remain; max <= 0 keeps them all. Points of
// different stages are never merged, so a series with more stages than
// max keeps one point per stage.
func Downsample(pts []MetricPoint, max int) []MetricPoint {
	if max <= 0 || len(pts) <= max {
		return pts
	}
	// Steps per output point, rounded up, so that each stage's points fall
	// into buckets of equal step width.
	lo, hi := pts[0].First, pts[len(pts)-1].Step
	width := (hi - lo + int64(max)) / int64(max)
	for {
		out := mergeBuckets(pts, lo, width)
		if len(out) <= max || width > hi-lo {
			return out
		}
		width *= 2
	}
}

func mergeBuckets(pts []MetricPoint, lo, width int64) []MetricPoint {
	var out []MetricPoint
	for _, p := range pts {
		b := (p.Step - lo) / width
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.Stage == p.Stage && (last.Step-lo)/width == b {
				last.Value = (last.Value*float64(last.N) + p.Value*float64(p.N)) / float64(last.N+p.N)
				last.N += p.N
				last.Step = p.Step
				last.Gen = max(last.Gen, p.Gen)
				last.UnixMs = max(last.UnixMs, p.UnixMs)
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

// recordHistory adds a report's step records to its job's history (the
// state's hook from progress). Records outside the current generation's
// range (before its restore point or past its stage) are skipped.
func (s *State) recordHistory(j *Job, p *ProgressReport) {
	if len(p.Steps) == 0 {
		return
	}
	if s.Metrics == nil {
		s.Metrics = map[string]*MetricHistory{}
	}
	h := s.Metrics[j.Name]
	if h == nil {
		h = &MetricHistory{Width: 1}
		s.Metrics[j.Name] = h
	}
	start := int64(0)
	if j.Restore != nil {
		start = j.Restore.Step
	}
	end := j.Manifest.StageEnd(j.Stage)
	tps := 0.0 // the other ranks' latest tokens/s: the job's rate is their sum
	for _, id := range j.Workers {
		if id != p.WorkerID {
			if w := s.Workers[id]; w != nil {
				tps += w.TokensPerSec
			}
		}
	}
	for _, rec := range p.Steps {
		if rec.Step <= start || rec.Step > end || rec.Stage != j.Stage {
			continue
		}
		if v, ok := rec.Values["tokens_per_sec"]; ok && len(j.Workers) > 1 {
			vals := make(map[string]Float, len(rec.Values))
			for k, x := range rec.Values {
				vals[k] = x
			}
			vals["tokens_per_sec"] = v + Float(tps)
			rec.Values = vals
		}
		h.Add(j.Generation, rec)
	}
}
