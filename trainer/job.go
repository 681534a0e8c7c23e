package trainer

import (
	"context"
	"github.com/loomtrain/loom/models"
	"log/slog"
	"time"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/loomtrain/loom/shard"
)

// Job is everything NewRun needs to train one stage of a manifest on one
// rank. Manifest, Stage, Rank, World and Store are required; Comm is
// required when World > 1.
type Job struct {
	// Manifest is the validated, defaulted job manifest.
	Manifest *api.Manifest
	// Stage is the index of the stage to run in Manifest.Stages.
	Stage int
	// Rank and World place this process in the data-parallel ring.
	Rank, World int
	// Generation is the ring generation (recorded in checkpoints).
	Generation uint64
	// Comm is this rank's communicator (nil when World == 1). Its rank and
	// world must match Rank and World. Run uses it from the goroutine that
	// calls Step (and from the Bucketer's goroutine inside Step).
	Comm *collective.Comm
	// Store holds the checkpoints, under CheckpointPrefix.
	Store            shard.ObjectStore
	CheckpointPrefix string
	// OpenDataset opens one of the manifest's datasets and returns the
	// store and key prefix of its index. nil: shard.ParseLocation(d.URI)
	// opened with S3 settings from the environment.
	OpenDataset func(ctx context.Context, d api.Dataset) (shard.ObjectStore, string, error)
	// Committer makes written checkpoints visible (the worker commits
	// through the coordinator). nil: a checkpoint is visible as soon as
	// its objects are written (single-process use and tests).
	Committer Committer
	// Tokenizer turns text into ids. nil: a byte-level tokenizer (every
	// byte an id, plus the special tokens of tokenizer.DefaultSpecial).
	Tokenizer tokenizer.Tokenizer
	// StopStep, when > 0, makes Done report true once the global step
	// reaches it (before the stage's end); 0 means the stage's end.
	StopStep int64
	// Logger receives progress at debug level and checkpoints at info
	// level. nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock for step timing. nil: time.Now.
	Now func() time.Time
	// Device is where each step's forward and backward run: "" or "host"
	// (the CPU, the reference), or a device of a backend linked into the
	// binary ("gpu", "gpu:N"; kernels.OpenDevice). The model's parameters
	// move there for the step's passes and come back to the host, with
	// their gradients, for the all-reduce, clipping, the optimizer and
	// checkpoints (the gradient all-reduce then starts after backward
	// instead of overlapping it). Sequence-parallel stages run on the host.
	Device string

	// configure, when set (tests), adjusts the stage's model
	// configuration before the model is built (e.g. the Q-Former's
	// dropout, which the tiny preset leaves at 0).
	configure func(*models.Config)
}

// Committer makes a checkpoint visible. The trainer calls Commit once all
// of the checkpoint's objects are written and verified; until Commit
// returns nil the checkpoint must not be used for a restore (DESIGN.md
// invariant 1). An error means the checkpoint stays invisible (for example
// the coordinator has moved on to a newer generation); its objects are
// left for garbage collection. Commit may be called from a goroutine other
// than the one calling Step, but never concurrently with itself for one Run.
type Committer interface {
	Commit(ctx context.Context, ref CheckpointRef) error
}

// CommitterFunc adapts a function to Committer.
type CommitterFunc func(ctx context.Context, ref CheckpointRef) error

// Commit calls f.
func (f CommitterFunc) Commit(ctx context.Context, ref CheckpointRef) error { return f(ctx, ref) }

// CheckpointRef identifies a written checkpoint: what the coordinator
// commits and later hands back to restore from (api/loom.proto Checkpoint).
type CheckpointRef struct {
	// Stage is the index of the stage the checkpoint was taken in.
	Stage int `json:"stage"`
	// Step is the global optimizer step (steps completed over all stages).
	Step int64 `json:"step"`
	// Generation is the ring generation that wrote it.
	Generation uint64 `json:"generation"`
	// Samples is the number of samples of the stage's data stream consumed.
	Samples int64 `json:"samples"`
	// Objects lists every object of the checkpoint with its checksum; the
	// one whose path ends in ManifestName is the checkpoint manifest.
	Objects []CheckpointObject `json:"objects"`
}

// CheckpointObject is one stored object of a checkpoint.
type CheckpointObject struct {
	Path   string `json:"path"`   // object key in the checkpoint store
	SHA256 string `json:"sha256"` // hex
	Size   int64  `json:"size"`
}

// CheckpointResult reports how a checkpoint went.
type CheckpointResult struct {
	// Ref is the committed checkpoint (zero when Err is set or Skipped).
	Ref CheckpointRef
	// Skipped is true on ranks other than 0: rank 0 writes and commits
	// (every rank holds the same weights and optimizer state).
	Skipped bool
	// Err is why the checkpoint was not committed.
	Err error
	// Blocked is how long Checkpoint held up training (copying the state);
	// Upload is the time from the copy to the last object written; Commit
	// is the time the Committer took.
	Blocked, Upload, Commit time.Duration
}

// Progress is what one optimizer step did, as the worker reports it.
type Progress struct {
	Stage     int
	StageName string
	// Step is the global step after this one (steps completed over all
	// stages); StageStep counts within the stage, from 1.
	Step, StageStep int64
	// Loss is the loss of the global batch (the ranks' micro-batch losses
	// weighted as the gradients are, summed over the ranks); Terms are its
	// named terms (itc, itm, itg, lm, ce_text, ce_vision), averaged over
	// this rank's micro-batches that have them.
	Loss  float64
	Terms map[string]float64
	// LR is the learning rate used; GradNorm the global gradient norm
	// before clipping.
	LR, GradNorm float64
	// Tokens is the number of tokens (text and vision positions) this rank
	// processed; TokensPerSec is Tokens over StepTime.
	Tokens       int64
	TokensPerSec float64
	// StepTime is the wall time of the step; CommWait the part spent
	// waiting on collectives (gradient all-reduce, loss normaliser,
	// hard-negative gathering); DataWait the part spent getting the
	// step's samples (reading shards, decoding, tokenising).
	StepTime, CommWait, DataWait time.Duration
	// Eval holds the manifest's eval block's results when this step ran
	// it (rank 0, every eval.every steps; eval/text_to_image_r1, ...), nil
	// otherwise. Its time is not in StepTime.
	Eval map[string]float64
	// Samples is the number of samples of the stage's stream consumed
	// after this step (all ranks together).
	Samples int64
	// SampleIDs are the ids ("dataset/sample-id") of the samples this
	// rank trained on in this step, in order (for the no-sample-twice,
	// none-skipped audit). In sequence-parallel stages (LWM's ring-attention
	// stages) every rank trains on the whole global batch and only rank 0
	// reports the ids.
	SampleIDs []string
}

// State is where a Run stands.
type State struct {
	Stage      int
	Step       int64 // global steps completed
	StageStep  int64 // steps completed in this stage
	StageSteps int64 // steps of the stage
	Samples    int64 // samples of the stage's stream consumed
	Seed       uint64
}
