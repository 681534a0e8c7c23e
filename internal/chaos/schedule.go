package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The fault kinds, in the order reports list them.
const (
	// KillCoordinator sends SIGKILL to a coordinator node; it is started
	// again on the same data directory.
	KillCoordinator Kind = "coordinator-sigkill"
	// KillWorker sends SIGKILL to a worker; it is started again with the
	// same ID.
	KillWorker Kind = "worker-sigkill"
	// HangWorker sends SIGSTOP to a worker for longer than the job's stall
	// grace, then SIGCONT: a hung worker whose registry lease stays alive.
	HangWorker Kind = "worker-sigstop"
	// PartitionCoordinator cuts every Raft link to and from a coordinator
	// for a while.
	PartitionCoordinator Kind = "coordinator-partition"
	// DelayRing delays every chunk of a worker's ring traffic.
	DelayRing Kind = "ring-delay"
	// DropRing cuts a worker's ring connections and refuses new ones for a
	// while.
	DropRing Kind = "ring-drop"
	// S3Errors makes the S3 proxy answer a share of requests with 5xx,
	// delay others and reset the connection of others, for a while.
	S3Errors Kind = "s3-faults"
	// DiskFull fills the size-limited file system under a coordinator's
	// Raft directory for a while.
	DiskFull Kind = "coordinator-disk-full"
)

// Kinds is every fault kind, in report order.
var Kinds = []Kind{KillCoordinator, KillWorker, HangWorker, PartitionCoordinator, DelayRing, DropRing, S3Errors, DiskFull}

// ParseKinds parses a comma-separated list of kinds ("all" is every kind).
func ParseKinds(s string) ([]Kind, error) {
	if s == "all" {
		return append([]Kind(nil), Kinds...), nil
	}
	var out []Kind
	for _, f := range strings.Split(s, ",") {
		k := Kind(strings.TrimSpace(f))
		if !k.valid() {
			return nil, fmt.Errorf("chaos: unknown fault kind %q (known: %v)", k, Kinds)
		}
		out = append(out, k)
	}
	return out, nil
}

func (k Kind) valid() bool {
	for _, x := range Kinds {
		if x == k {
			return true
		}
	}
	return false
}

// OnCoordinator reports whether the kind targets a coordinator (else a
// worker, or, for S3Errors, the object store).
func (k Kind) OnCoordinator() bool {
	return k == KillCoordinator || k == PartitionCoordinator || k == DiskFull
}

// Fault is one scheduled fault.
type Fault struct {
	Kind Kind
	// Step: the fault is injected once the job has reported this step.
	Step int64
	// Target is the index of the coordinator or worker it hits (unused by
	// S3Errors).
	Target int
	// Hold is how long a lasting fault lasts (stop, partition, delay,
	// drop, S3 faults, full disk); zero for kills.
	Hold time.Duration
	// Delay is the added latency per forwarded chunk (DelayRing) or per
	// slowed request (S3Errors).
	Delay time.Duration
}

func (f Fault) String() string {
	s := fmt.Sprintf("%s at step %d", f.Kind, f.Step)
	if f.Kind != S3Errors {
		role := "worker"
		if f.Kind.OnCoordinator() {
			role = "coordinator"
		}
		s += fmt.Sprintf(" on %s %d", role, f.Target)
	}
	if f.Hold > 0 {
		s += fmt.Sprintf(" for %s", f.Hold)
	}
	if f.Delay > 0 {
		s += fmt.Sprintf(" (+%s)", f.Delay)
	}
	return s
}

// Options shape a schedule.
type Options struct {
	Kinds        []Kind // the kinds to draw from (each appears once before any twice)
	Faults       int    // how many faults
	FirstStep    int64  // no fault before this step
	LastStep     int64  // none after it
	Coordinators int
	Workers      int
	// Hold is the base duration of each lasting kind; a fault lasts
	// between Hold and 1.5 Hold. A kind missing here gets DefaultHold.
	Hold map[Kind]time.Duration
}

// DefaultHold is the base duration of a lasting fault whose kind has no
// entry in Options.Hold.
const DefaultHold = 3 * time.Second

func lasting(k Kind) bool { return k != KillCoordinator && k != KillWorker }

// Plan returns the schedule of seed: o.Faults faults, sorted by step, at
// distinct steps spread over [o.FirstStep, o.LastStep], their kinds drawn
// from o.Kinds so that every kind appears once before any appears twice.
// It is a pure function of its arguments.
func Plan(seed uint64, o Options) ([]Fault, error) {
	if len(o.Kinds) == 0 || o.Faults <= 0 {
		return nil, nil
	}
	span := o.LastStep - o.FirstStep + 1
	if o.FirstStep < 1 || span < int64(o.Faults) {
		return nil, fmt.Errorf("chaos: %d faults do not fit at distinct steps in [%d, %d]", o.Faults, o.FirstStep, o.LastStep)
	}
	if o.Coordinators < 1 || o.Workers < 1 {
		return nil, fmt.Errorf("chaos: need at least one coordinator and one worker, have %d and %d", o.Coordinators, o.Workers)
	}
	for _, k := range o.Kinds {
		if !k.valid() {
			return nil, fmt.Errorf("chaos: unknown fault kind %q", k)
		}
	}
	r := rand.New(rand.NewPCG(seed, 0x10011001))
	// Kinds: shuffled rounds of the whole list.
	var kinds []Kind
	for len(kinds) < o.Faults {
		round := append([]Kind(nil), o.Kinds...)
		r.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		kinds = append(kinds, round...)
	}
	kinds = kinds[:o.Faults]
	// Steps: one in each of o.Faults equal slots of the range, in the
	// slot's first half, so that consecutive faults are about a slot apart.
	out := make([]Fault, o.Faults)
	for i := range out {
		lo := o.FirstStep + span*int64(i)/int64(o.Faults)
		hi := o.FirstStep + span*int64(i+1)/int64(o.Faults) // exclusive
		width := max(1, (hi-lo+1)/2)
		f := Fault{Kind: kinds[i], Step: lo + r.Int64N(width)}
		if f.Kind.OnCoordinator() {
			f.Target = r.IntN(o.Coordinators)
		} else if f.Kind != S3Errors {
			f.Target = r.IntN(o.Workers)
		}
		if lasting(f.Kind) {
			base := o.Hold[f.Kind]
			if base <= 0 {
				base = DefaultHold
			}
			f.Hold = base + time.Duration(r.Int64N(int64(base)/2+1)).Round(100*time.Millisecond)
		}
		switch f.Kind {
		case DelayRing:
			f.Delay = time.Duration(20+r.IntN(80)) * time.Millisecond
		case S3Errors:
			f.Delay = time.Duration(500+r.IntN(1000)) * time.Millisecond
		}
		out[i] = f
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out, nil
}
