package worker

import (
	"context"
	"time"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/trainer"
)

// Coordinator is what the agent needs from the coordinator's Workers
// service. Implementations must be safe for concurrent use: the assignment
// watch, progress reports and checkpoint commits run in different
// goroutines.
type Coordinator interface {
	// WatchAssignment opens the worker's assignment stream: the current
	// assignment first, then each change. The stream ends with an error
	// when the connection breaks or ctx ends; the agent then calls
	// WatchAssignment again (an implementation with several coordinator
	// addresses moves on to the next one).
	WatchAssignment(ctx context.Context, workerID string) (AssignmentStream, error)
	// ReportProgress records one step. An error with gRPC code
	// FailedPrecondition means the generation is no longer current: the
	// agent stops it and waits for its next assignment. Other errors are
	// transient; the agent drops the report (the next one supersedes it).
	ReportProgress(ctx context.Context, req *loompb.ReportProgressRequest) error
	// CommitCheckpoint records a written checkpoint. A retry of the same
	// request (same request_id) applies once. FailedPrecondition means the
	// checkpoint is refused (stale generation): its objects stay invisible.
	CommitCheckpoint(ctx context.Context, req *loompb.CommitCheckpointRequest) error
	// ReportFailure says the worker's generation failed for a reason of its
	// own (see ReportableFailure); the coordinator starts the next
	// generation at once or fails the job once its restarts are spent. A
	// retry of the same request (same request_id) applies once.
	// FailedPrecondition: the generation is no longer current.
	ReportFailure(ctx context.Context, req *loompb.ReportFailureRequest) error
}

// AssignmentStream yields assignments; loompb.Workers_WatchAssignmentClient
// implements it. Recv blocks until the next assignment or an error.
type AssignmentStream interface {
	Recv() (*loompb.Assignment, error)
}

// Info is what the worker registers: who it is and where its peers reach
// its collective endpoint.
type Info struct {
	ID     string
	Addr   string // host:port peers dial (--advertise)
	Host   string // machine name: the scheduler puts ring neighbours on one host
	GPUs   int
	Labels map[string]string
	// Version is the build this worker runs.
	Version string
}

// Registrar registers the worker in the registry the coordinator watches.
// cmd/loom adapts coordinator/registry (etcd) to it.
type Registrar interface {
	// Register puts the worker in the registry under a lease of ttl that
	// it keeps alive, and returns once the registration is visible.
	Register(ctx context.Context, w Info, ttl time.Duration) (Lease, error)
}

// Lease is a live registration; coordinator/registry.Registration
// implements it.
type Lease interface {
	// Done is closed when the registration ends: lease lost (Err says why)
	// or Close called.
	Done() <-chan struct{}
	// Err is why the registration ended; nil while it lives or after Close.
	Err() error
	// Close revokes the registration, so the coordinator sees the worker go
	// at once. It is idempotent.
	Close() error
}

// Trainer is what the agent needs from one trainer run (trainer.Run
// implements it). All methods are called from one goroutine.
type Trainer interface {
	// Step runs one optimizer step.
	Step(ctx context.Context) (trainer.Progress, error)
	// Checkpoint copies the state and uploads it in the background; the
	// channel yields exactly one result (Skipped on ranks other than 0),
	// after the Committer has been called.
	Checkpoint(ctx context.Context) (<-chan trainer.CheckpointResult, error)
	// Done reports whether the stage (or Job.StopStep) is reached.
	Done() bool
	// State says where the run stands.
	State() trainer.State
	// Close waits for background uploads and releases the data readers.
	Close() error
}

// NewTrainerFunc builds the trainer run of one generation; restore is the
// committed checkpoint to load, or nil to initialise the stage.
type NewTrainerFunc func(ctx context.Context, j trainer.Job, restore *trainer.CheckpointRef) (Trainer, error)

// NewTrainer is the NewTrainerFunc of the real trainer.
func NewTrainer(ctx context.Context, j trainer.Job, restore *trainer.CheckpointRef) (Trainer, error) {
	r, err := trainer.NewRun(ctx, j, restore)
	if err != nil {
		return nil, err
	}
	return r, nil
}
