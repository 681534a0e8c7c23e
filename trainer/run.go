package trainer

import (
	"context"
	"errors"
)

// ManifestName is the file name of a checkpoint's manifest object.
const ManifestName = "manifest.json"

// ErrNotImplemented is returned by the parts of the API that are still
// being written (the skeleton is committed first so the worker can build
// against it).
var ErrNotImplemented = errors.New("trainer: not implemented yet")

// Run trains one stage on one rank. It is driven by one goroutine: Step,
// Checkpoint, Evaluate and Close must not be called concurrently (the
// uploads Checkpoint starts run in the background and only read a private
// copy of the state).
type Run struct {
	job Job
}

// NewRun builds the stage's model and optimizer and positions the data
// stream. With restore nil it initialises the stage: from the previous
// stage's final checkpoint when the stage has one (Manifest InitFrom, or
// the stage before), found through the Store, otherwise from the seed. With
// restore set it loads that committed checkpoint, verifying every object's
// sha256 (the error names the object and, for a bad tensor, the tensor).
func NewRun(ctx context.Context, j Job, restore *CheckpointRef) (*Run, error) {
	return nil, ErrNotImplemented
}

// Step runs one optimizer step: every micro-batch of this rank's slice of
// the global batch forward and backward, the gradient all-reduce, clipping,
// the learning rate of the schedule and AdamW. It fails if the stage is
// done.
func (r *Run) Step(ctx context.Context) (Progress, error) {
	return Progress{}, ErrNotImplemented
}

// Checkpoint copies the weights, optimizer moments and data position and
// returns; the objects are uploaded in the background while training goes
// on, then committed through the Committer. The channel yields exactly one
// result. On ranks other than 0 it yields a Skipped result at once.
func (r *Run) Checkpoint(ctx context.Context) (<-chan CheckpointResult, error) {
	return nil, ErrNotImplemented
}

// Done reports whether the stage (or Job.StopStep) is reached.
func (r *Run) Done() bool { return true }

// State returns where the run stands.
func (r *Run) State() State { return State{} }

// Close waits for background uploads and releases the data readers. It
// does not close the Comm (the caller owns it).
func (r *Run) Close() error { return nil }
