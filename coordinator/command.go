package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/loomtrain/loom/api"
)

// commandVersion is the first byte of every encoded command, so that a
// future encoding can be told apart in a mixed-version cluster.
const commandVersion byte = 1

// Command is one write to the replicated state. Exactly one of the pointer
// fields is set. Time is supplied by whoever builds the command (the API
// server or the leader's scheduler), never read inside Apply.
type Command struct {
	// ID deduplicates retries: a command whose ID was applied before returns
	// the earlier result and changes nothing. Empty: no deduplication.
	ID   string    `json:"id,omitempty"`
	Time time.Time `json:"time"`

	RegisterNode *RegisterNode `json:"register_node,omitempty"`
	WorkerUp     *WorkerUp     `json:"worker_up,omitempty"`
	WorkerDown   *WorkerDown   `json:"worker_down,omitempty"`
	Submit       *Submit       `json:"submit,omitempty"`
	Cancel       *Cancel       `json:"cancel,omitempty"`
	Resume       *Resume       `json:"resume,omitempty"`
	Schedule     *Schedule     `json:"schedule,omitempty"`
	Progress     *Progress     `json:"progress,omitempty"`
	Commit       *Commit       `json:"commit,omitempty"`
	Complete     *Complete     `json:"complete,omitempty"`
	Fail         *Fail         `json:"fail,omitempty"`
	WorkerFailed *WorkerFailed `json:"worker_failed,omitempty"`
	Purge        *Purge        `json:"purge,omitempty"`
}

// RegisterNode records a coordinator node's API address, so followers can
// forward writes to the leader.
type RegisterNode struct {
	NodeID  string `json:"node_id"`
	APIAddr string `json:"api_addr"`
}

// WorkerInfo is a worker as the registry describes it.
type WorkerInfo struct {
	ID     string            `json:"id"`
	Addr   string            `json:"addr"`
	Host   string            `json:"host,omitempty"`
	GPUs   int               `json:"gpus,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// WorkerUp says a worker registered (or re-registered).
type WorkerUp struct {
	Worker WorkerInfo `json:"worker"`
}

// WorkerDown says a worker's registration is gone (lease expired or revoked).
type WorkerDown struct {
	WorkerID string `json:"worker_id"`
	Reason   string `json:"reason,omitempty"`
}

// Submit adds a job. The manifest must be defaulted and valid.
type Submit struct {
	Manifest api.Manifest `json:"manifest"`
}

// Cancel stops a job and releases its workers.
type Cancel struct {
	Job string `json:"job"`
}

// Resume makes a failed, cancelled or running job pending again, to restart
// from the committed checkpoint at FromStep (0: the last one). Committed
// checkpoints after FromStep are retired.
type Resume struct {
	Job      string `json:"job"`
	FromStep int64  `json:"from_step,omitempty"`
}

// Schedule starts generation Generation of a job (which must be the job's
// current generation + 1) on Workers, in rank order, at Stage, restoring
// from the job's last committed checkpoint. No workers: the job waits
// (pending) for enough workers. Restart counts the new generation against
// the failure policy's max_restarts; Unhealthy workers are set aside: the
// scheduler does not pick them again for the job's stall timeout (or until
// they re-register), and after that only behind every healthy free worker.
type Schedule struct {
	Job        string   `json:"job"`
	Generation int64    `json:"generation"`
	Stage      int      `json:"stage"`
	Workers    []string `json:"workers"`
	Restart    bool     `json:"restart,omitempty"`
	// Fallback: the restart is a fall-back from a corrupt checkpoint and
	// does not count against max_restarts.
	Fallback  bool     `json:"fallback,omitempty"`
	Unhealthy []string `json:"unhealthy,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

// ProgressReport is one rank's report of one step.
type ProgressReport struct {
	WorkerID     string           `json:"worker_id"`
	Job          string           `json:"job"`
	Generation   int64            `json:"generation"`
	Step         int64            `json:"step"`
	Samples      int64            `json:"samples"`
	Losses       map[string]Float `json:"losses,omitempty"` // NaN and ±Inf survive encoding
	TokensPerSec float64          `json:"tokens_per_sec,omitempty"`
	StepTime     time.Duration    `json:"step_time,omitempty"`
	// Steps are rank 0's per-step scalars since its last accepted report,
	// for the job's metric history (history.go).
	Steps []StepRecord `json:"steps,omitempty"`
}

// Progress records a batch of reports (the leader batches them). Reports
// of a stale generation are skipped; the result counts them.
type Progress struct {
	Reports []ProgressReport `json:"reports"`
}

// Commit records a checkpoint whose objects have all been written.
type Commit struct {
	WorkerID   string       `json:"worker_id"`
	Job        string       `json:"job"`
	Generation int64        `json:"generation"`
	Step       int64        `json:"step"`
	Samples    int64        `json:"samples"`
	Objects    []ObjectInfo `json:"objects"`
	// Steps are step metrics for the job's history, recorded with the
	// checkpoint (history.go).
	Steps []StepRecord `json:"steps,omitempty"`
}

// ObjectInfo is one checkpoint object.
type ObjectInfo struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Complete marks a job succeeded once its final checkpoint is committed.
type Complete struct {
	Job string `json:"job"`
}

// Fail marks a job failed and releases its workers.
type Fail struct {
	Job    string `json:"job"`
	Reason string `json:"reason"`
}

// WorkerFailed is a worker's report that its generation of a job failed
// for a reason of its own (a trainer or storage error), not a lost peer.
// The scheduler starts the next generation at once instead of waiting for
// the stall timeout, and fails the job with Error once the failure policy's
// restarts are spent. A report for a generation that is not the job's
// current one, or from a worker outside it, is refused as stale.
type WorkerFailed struct {
	WorkerID   string `json:"worker_id"`
	Job        string `json:"job"`
	Generation int64  `json:"generation"`
	Error      string `json:"error"`
	// Kind classifies the failure for the failure policy ("": restart up
	// to max_restarts).
	Kind FailureKind `json:"kind,omitempty"`
	// CheckpointStep is the corrupt checkpoint's step (Kind
	// FailCorruptCheckpoint).
	CheckpointStep int64 `json:"checkpoint_step,omitempty"`
}

// FailureKind is what a worker's failure means for its job.
type FailureKind string

const (
	// FailCorruptData: stored data failed its checksum or does not decode.
	// Reading it again gives the same bytes, so the job fails at once,
	// naming the object.
	FailCorruptData FailureKind = "corrupt-data"
	// FailCorruptCheckpoint: the job's own committed checkpoint at
	// CheckpointStep is corrupt. When it is the one the generation
	// restored from, it is set aside (Job.Corrupt) and the next generation
	// restores from the one before, without counting against
	// max_restarts; any other checkpoint fails the job at once.
	FailCorruptCheckpoint FailureKind = "corrupt-checkpoint"
)

// Purge removes retired checkpoints whose objects have been deleted.
type Purge struct {
	Job   string  `json:"job"`
	Steps []int64 `json:"steps"`
}

// Kind names the command's operation.
func (c *Command) Kind() string {
	switch {
	case c.RegisterNode != nil:
		return "register-node"
	case c.WorkerUp != nil:
		return "worker-up"
	case c.WorkerDown != nil:
		return "worker-down"
	case c.Submit != nil:
		return "submit"
	case c.Cancel != nil:
		return "cancel"
	case c.Resume != nil:
		return "resume"
	case c.Schedule != nil:
		return "schedule"
	case c.Progress != nil:
		return "progress"
	case c.Commit != nil:
		return "commit"
	case c.Complete != nil:
		return "complete"
	case c.Fail != nil:
		return "fail"
	case c.WorkerFailed != nil:
		return "worker-failed"
	case c.Purge != nil:
		return "purge"
	}
	return "empty"
}

// Encode serialises c for the Raft log.
func (c *Command) Encode() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return append([]byte{commandVersion}, b...), nil
}

// DecodeCommand parses an encoded command.
func DecodeCommand(b []byte) (*Command, error) {
	if len(b) == 0 {
		return nil, errors.New("empty command")
	}
	if b[0] != commandVersion {
		return nil, fmt.Errorf("command encoding version %d; this node understands %d", b[0], commandVersion)
	}
	var c Command
	if err := json.Unmarshal(b[1:], &c); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	return &c, nil
}

// Code classifies a command's failure (mapped to gRPC codes by the server).
type Code int

const (
	OK Code = iota
	InvalidArgument
	NotFound
	AlreadyExists
	FailedPrecondition
)

func (c Code) String() string {
	return [...]string{"ok", "invalid-argument", "not-found", "already-exists", "failed-precondition"}[c]
}

// Result is what Apply returns for a command.
type Result struct {
	Code Code   `json:"code,omitempty"`
	Msg  string `json:"msg,omitempty"`
	// Dup is true when the command's ID had been applied before.
	Dup bool `json:"dup,omitempty"`
	// Skipped counts progress reports ignored as stale.
	Skipped int `json:"skipped,omitempty"`
	// Index is the state's Index after the command (set by the FSM), so a
	// follower that forwarded the command can wait until its replica has
	// applied it and read its own write.
	Index uint64 `json:"index,omitempty"`
}

// Err returns the result as an error, or nil when it succeeded.
func (r Result) Err() error {
	if r.Code == OK {
		return nil
	}
	return &CommandError{Code: r.Code, Msg: r.Msg}
}

// CommandError is a command the state machine refused.
type CommandError struct {
	Code Code
	Msg  string
}

func (e *CommandError) Error() string { return e.Msg }

func fail(code Code, format string, args ...any) Result {
	return Result{Code: code, Msg: fmt.Sprintf(format, args...)}
}
