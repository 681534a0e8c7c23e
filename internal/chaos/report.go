package chaos

import (
	"fmt"
	"io"
	"sort"
	"time"
)

// Outcome is what became of one injected fault.
type Outcome struct {
	Fault    Fault
	Seed     uint64
	Survived bool          // the cluster recovered and the job went on
	Recover  time.Duration // from injection to recovery (see TestChaos)
	Restarts int           // restarts of the job (new generations from a checkpoint) meanwhile
	Note     string        // why it was not survived, or why it was not injected
	Skipped  bool          // not injected (Note says why)
	// Unavailable: skipped because this machine cannot inject the kind
	// (Note says why), as opposed to a job that ended first.
	Unavailable bool
}

// Report gathers outcomes, per kind.
type Report struct {
	Outcomes []Outcome
}

// Add records an outcome.
func (r *Report) Add(o Outcome) { r.Outcomes = append(r.Outcomes, o) }

// KindStats are one kind's figures.
type KindStats struct {
	Kind                 Kind
	Injected, Survived   int
	Restarts             int // restarts of the job, summed
	Skipped              int
	Min, Median, Max     time.Duration // time to recover of the survived faults
	NotAvailable         string        // a note of a skipped fault
	RecoverTimes         []time.Duration
	FailedNotes, Details []string
}

// Stats returns the figures of every kind that was scheduled, in Kinds
// order.
func (r *Report) Stats() []KindStats {
	by := map[Kind]*KindStats{}
	for _, o := range r.Outcomes {
		s := by[o.Fault.Kind]
		if s == nil {
			s = &KindStats{Kind: o.Fault.Kind}
			by[o.Fault.Kind] = s
		}
		switch {
		case o.Skipped:
			s.Skipped++
			if o.Unavailable {
				s.NotAvailable = o.Note
			}
		case o.Survived:
			s.Injected++
			s.Survived++
			s.RecoverTimes = append(s.RecoverTimes, o.Recover)
			s.Restarts += o.Restarts
		default:
			s.Injected++
			s.FailedNotes = append(s.FailedNotes, o.Note)
		}
	}
	var out []KindStats
	for _, k := range Kinds {
		s := by[k]
		if s == nil {
			continue
		}
		if n := len(s.RecoverTimes); n > 0 {
			ts := append([]time.Duration(nil), s.RecoverTimes...)
			sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
			s.Min, s.Median, s.Max = ts[0], ts[n/2], ts[n-1]
		}
		out = append(out, *s)
	}
	return out
}

// Print writes the per-kind table: faults injected and survived, and the
// time to recover (min / median / max).
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "| fault | injected | survived | not injected | job restarts | recover min | median | max |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	round := func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
	for _, s := range r.Stats() {
		if s.Injected == 0 && s.NotAvailable != "" {
			fmt.Fprintf(w, "| %s | 0 | 0 | %d | | not available here: %s | | |\n", s.Kind, s.Skipped, s.NotAvailable)
			continue
		}
		if s.Survived == 0 {
			fmt.Fprintf(w, "| %s | %d | 0 | %d | %d | – | – | – |\n", s.Kind, s.Injected, s.Skipped, s.Restarts)
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %s | %s | %s |\n", s.Kind, s.Injected, s.Survived, s.Skipped, s.Restarts, round(s.Min), round(s.Median), round(s.Max))
	}
}
