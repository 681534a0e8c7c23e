package worker

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

// Current is the generation the agent last started (zero: none). It stays
// set after the generation finished its stage, so that the same assignment
// arriving again is not run twice.
type Current struct {
	Job        string
	Generation int64
}

// IsZero reports whether no generation was started.
func (c Current) IsZero() bool { return c.Job == "" }

// Action is what a new assignment does to the agent.
type Action int

const (
	// Keep: the assignment is the generation already started (or idle, and
	// nothing runs).
	Keep Action = iota
	// Start: nothing runs; start the assignment's generation.
	Start
	// Stop: the agent is now idle; stop the running generation.
	Stop
	// Replace: stop the running generation, then start the new one.
	Replace
)

func (a Action) String() string {
	switch a {
	case Keep:
		return "keep"
	case Start:
		return "start"
	case Stop:
		return "stop"
	case Replace:
		return "replace"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Decide returns what assignment next does to the agent whose last started
// generation is cur. It is pure.
func Decide(cur Current, next *loompb.Assignment) Action {
	switch {
	case next.GetIdle() && cur.IsZero():
		return Keep
	case next.GetIdle():
		return Stop
	case cur.Job == next.Job && cur.Generation == next.Generation:
		return Keep
	case cur.IsZero():
		return Start
	}
	return Replace
}

// CheckAssignment reports what makes a non-idle assignment unusable for
// worker self, naming the field.
func CheckAssignment(self string, a *loompb.Assignment) error {
	if a.Idle {
		return nil
	}
	where := fmt.Sprintf("assignment of job %q generation %d", a.Job, a.Generation)
	switch {
	case a.Job == "":
		return fmt.Errorf("%s: job is empty", where)
	case a.World < 1:
		return fmt.Errorf("%s: world %d", where, a.World)
	case a.Rank < 0 || a.Rank >= a.World:
		return fmt.Errorf("%s: rank %d outside [0, %d)", where, a.Rank, a.World)
	case len(a.Peers) != int(a.World):
		return fmt.Errorf("%s: %d peers for world %d", where, len(a.Peers), a.World)
	case len(a.ManifestYaml) == 0:
		return fmt.Errorf("%s: manifest_yaml is empty", where)
	case a.StopStep <= a.StartStep:
		return fmt.Errorf("%s: stop_step %d is not after start_step %d", where, a.StopStep, a.StartStep)
	}
	for i, p := range a.Peers {
		if int(p.Rank) != i {
			return fmt.Errorf("%s: peers[%d].rank is %d", where, i, p.Rank)
		}
		if p.Addr == "" {
			return fmt.Errorf("%s: peers[%d] (worker %q) has no address", where, i, p.WorkerId)
		}
	}
	if id := a.Peers[a.Rank].WorkerId; id != self {
		return fmt.Errorf("%s: peers[%d] is worker %q, not this worker (%q)", where, a.Rank, id, self)
	}
	return nil
}

// StepPlan is what the agent does after a step.
type StepPlan int

const (
	// Continue training.
	Continue StepPlan = iota
	// Checkpoint in the background and continue (the manifest's interval).
	Checkpoint
	// Finish: the stage's stop step is reached. Checkpoint, wait for the
	// commit, then wait for the next assignment.
	Finish
	// Drain: a rank is draining. Checkpoint (rank 0 commits it), wait for
	// it, then the draining rank exits and the others wait for the next
	// assignment.
	Drain
)

func (p StepPlan) String() string {
	switch p {
	case Continue:
		return "continue"
	case Checkpoint:
		return "checkpoint"
	case Finish:
		return "finish"
	case Drain:
		return "drain"
	}
	return fmt.Sprintf("StepPlan(%d)", int(p))
}

// PlanStep decides what follows the step that brought the run to global
// step (interval: the manifest's checkpoint interval; draining: some rank
// voted to drain). It is pure.
func PlanStep(step, stopStep, interval int64, draining bool) StepPlan {
	switch {
	case step >= stopStep:
		return Finish
	case draining:
		return Drain
	case interval > 0 && step%interval == 0:
		return Checkpoint
	}
	return Continue
}

// peerError marks a failure of the ring itself (connecting it, or a vote
// over it): a symptom of a peer that died or left, not this worker's fault.
type peerError struct{ err error }

func (e *peerError) Error() string { return e.err.Error() }
func (e *peerError) Unwrap() error { return e.err }

// FailureKind classifies a reportable failure for the coordinator's
// failure policy: corrupt stored data (a *shard.CorruptError) fails the
// job at once, and a corrupt checkpoint of the job's own (a
// *trainer.CorruptCheckpointError, with its step) is set aside. Anything
// else is unspecified: the job restarts, up to failure.max_restarts.
func FailureKind(err error) (loompb.FailureKind, int64) {
	var cc *trainer.CorruptCheckpointError
	if errors.As(err, &cc) {
		return loompb.FailureKind_FAILURE_KIND_CORRUPT_CHECKPOINT, cc.Step
	}
	var cd *shard.CorruptError
	if errors.As(err, &cd) {
		return loompb.FailureKind_FAILURE_KIND_CORRUPT_DATA, 0
	}
	return loompb.FailureKind_FAILURE_KIND_UNSPECIFIED, 0
}

// ReportableFailure reports whether a generation that ended with err
// should be reported to the coordinator (Coordinator.ReportFailure) so that
// it starts the next generation at once. Only a failure of this worker's
// own — trainer, data, checkpoint storage, a bad manifest — is reported. A
// collective failure is a symptom of a dead or departed peer, which the
// coordinator detects itself (the peer's lease, or its own report);
// reporting it would restart the job before the dead peer is known and
// spend a restart on a generation that cannot work. A refusal by the
// coordinator (FAILED_PRECONDITION: the generation is stale) and a
// cancelled context are not failures either.
func ReportableFailure(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var op *collective.OpError
	var pe *peerError
	if errors.As(err, &op) || errors.As(err, &pe) {
		return false
	}
	for _, e := range []error{collective.ErrClosed, collective.ErrPeerClosed, collective.ErrTimeout,
		collective.ErrMismatch, collective.ErrAborted, collective.ErrTooLarge} {
		if errors.Is(err, e) {
			return false
		}
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if s, ok := status.FromError(e); ok && s.Code() == codes.FailedPrecondition {
			return false
		}
	}
	return true
}
