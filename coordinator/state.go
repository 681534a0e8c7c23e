package coordinator

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/loomtrain/loom/api"
)

// JobState is where a job is in its life.
type JobState string

const (
	Pending   JobState = "pending"
	Running   JobState = "running"
	Succeeded JobState = "succeeded"
	Failed    JobState = "failed"
	Cancelled JobState = "cancelled"
)

// Terminal reports whether the job no longer runs.
func (s JobState) Terminal() bool { return s == Succeeded || s == Failed || s == Cancelled }

// Checkpoint is a committed checkpoint of a job.
type Checkpoint struct {
	Step       int64        `json:"step"`
	Stage      int          `json:"stage"`
	Generation int64        `json:"generation"`
	Samples    int64        `json:"samples"`
	Objects    []ObjectInfo `json:"objects"`
	Committed  time.Time    `json:"committed"`
}

// CorruptCheckpoint is a checkpoint set aside, and why.
type CorruptCheckpoint struct {
	Checkpoint
	Reason string    `json:"reason"`
	Found  time.Time `json:"found"`
}

// maxCorrupt is how many set-aside checkpoints each job lists.
const maxCorrupt = 8

// Event is something that happened to a job, kept for WatchJob.
type Event struct {
	Seq  int64     `json:"seq"`
	Job  string    `json:"job"`
	Kind string    `json:"kind"`
	Msg  string    `json:"msg"`
	Time time.Time `json:"time"`
}

// maxEvents is how many events each job keeps.
const maxEvents = 64

// Job is a job's replicated state.
type Job struct {
	Name     string       `json:"name"`
	Manifest api.Manifest `json:"manifest"`
	Order    int64        `json:"order"` // submission order
	State    JobState     `json:"state"`
	Message  string       `json:"message,omitempty"`

	Stage      int      `json:"stage"`
	Generation int64    `json:"generation"`
	Workers    []string `json:"workers,omitempty"` // rank order of the current generation
	// Restore is the checkpoint the current generation started from.
	Restore  *Checkpoint `json:"restore,omitempty"`
	Restarts int         `json:"restarts"`

	Step    int64 `json:"step"`
	Samples int64 `json:"samples"`
	// Losses are the newest progress report's losses, of step LossStep in
	// the current stage. They move with reports only: a committed
	// checkpoint moves Step ahead of them until its step's report
	// arrives. A generation of another stage clears them, and
	// TokensPerSec and StepTime with them.
	Losses       map[string]Float `json:"losses,omitempty"`
	LossStep     int64            `json:"loss_step,omitempty"`
	TokensPerSec float64          `json:"tokens_per_sec,omitempty"`
	StepTime     time.Duration    `json:"step_time,omitempty"` // smoothed

	// Checkpoints are the retained committed checkpoints, ascending by step.
	Checkpoints []Checkpoint `json:"checkpoints,omitempty"`
	// Garbage are retired checkpoints whose objects are still to be deleted.
	Garbage []Checkpoint `json:"garbage,omitempty"`
	// Corrupt are committed checkpoints set aside because a worker found
	// them corrupt when restoring, newest last (at most maxCorrupt). Their
	// objects are kept for inspection.
	Corrupt []CorruptCheckpoint `json:"corrupt,omitempty"`
	// Pinned are steps of this job's checkpoints that other jobs start
	// from (their manifests' init blocks); retention keeps them.
	Pinned []int64 `json:"pinned,omitempty"`

	Submitted       time.Time `json:"submitted"`
	Updated         time.Time `json:"updated"`
	GenerationStart time.Time `json:"generation_start"`

	Events []Event `json:"events,omitempty"`
	// History are the job's most recent generations, oldest first.
	History []GenerationRecord `json:"history,omitempty"`
}

// GenerationRecord is one generation of a job: which workers held which
// ranks, from which checkpoint, and why it started.
type GenerationRecord struct {
	Generation  int64     `json:"generation"`
	Stage       int       `json:"stage"`
	Peers       []Peer    `json:"peers,omitempty"`
	RestoreStep int64     `json:"restore_step"`
	Started     time.Time `json:"started"`
	Reason      string    `json:"reason,omitempty"`
	Restart     bool      `json:"restart,omitempty"`
}

// maxHistory is how many generations each job keeps.
const maxHistory = 16

// LastCheckpoint returns the newest committed checkpoint, or nil.
func (j *Job) LastCheckpoint() *Checkpoint {
	if len(j.Checkpoints) == 0 {
		return nil
	}
	return &j.Checkpoints[len(j.Checkpoints)-1]
}

// Available reports whether w may be scheduled at now: it is up, and not
// set aside for a stall (or its time set aside is over).
func (w *Worker) Available(now time.Time) bool {
	return w.Up && (!w.Unhealthy || !now.Before(w.UnhealthyUntil))
}

// Worker is a worker's replicated state.
type Worker struct {
	WorkerInfo
	Up bool `json:"up"`
	// Unhealthy is set when the worker stalled while the rest of its job's
	// ranks did not; cleared when it re-registers or is scheduled again.
	// It is set aside until UnhealthyUntil (the stall timeout of the job
	// that set it aside, from then), and after that is picked again, after
	// every healthy free worker: a worker that stalled once and recovered
	// while keeping its lease would otherwise never be used again, and a
	// job without a spare would wait for workers forever.
	Unhealthy      bool      `json:"unhealthy,omitempty"`
	UnhealthyUntil time.Time `json:"unhealthy_until,omitzero"`
	// Restarted is set when the worker re-registered at a new address while
	// in a job: the generation it was in is broken.
	Restarted bool      `json:"restarted,omitempty"`
	Job       string    `json:"job,omitempty"`
	Since     time.Time `json:"since"`
	// LastReport is when the worker last reported progress in its current
	// generation (zero before its first report).
	LastReport   time.Time `json:"last_report"`
	LastStep     int64     `json:"last_step"`
	TokensPerSec float64   `json:"tokens_per_sec,omitempty"`
	// Failure is the error the worker reported for its current generation
	// (WorkerFailed); cleared when the generation ends.
	Failure string `json:"failure,omitempty"`
	// FailureKind is that failure's kind.
	FailureKind FailureKind `json:"failure_kind,omitempty"`
}

// The dedup table remembers at most dedupWindow command IDs and at most
// dedupBytes of IDs and result messages, whichever is reached first
// (invariant 8: its memory is bounded whatever the IDs' lengths).
const (
	dedupWindow = 16384
	dedupBytes  = 8 << 20
)

// dedupCost is what one entry of the dedup table costs, approximately.
func dedupCost(id string, r Result) int64 { return int64(2*len(id) + len(r.Msg) + 64) }

// State is the coordinator's replicated state machine. It is pure: Apply
// changes it only as a function of its current value and the command, so
// every replica that applies the same log holds the same state. It is not
// safe for concurrent use; the FSM adapter serialises access.
type State struct {
	Jobs    map[string]*Job    `json:"jobs"`
	Workers map[string]*Worker `json:"workers"`
	// Nodes maps coordinator node ID → API (gRPC) address.
	Nodes map[string]string `json:"nodes"`

	NextOrder int64 `json:"next_order"`
	NextEvent int64 `json:"next_event"`

	// Applied remembers the results of recent command IDs (oldest first in
	// AppliedOrder) for deduplication.
	Applied      map[string]Result `json:"applied"`
	AppliedOrder []string          `json:"applied_order"`
	// AppliedBytes is the dedup table's cost (dedupCost summed).
	AppliedBytes int64 `json:"applied_bytes,omitempty"`
	// Index is the number of commands applied.
	Index uint64 `json:"index"`
	// Metrics are the jobs' metric histories by job name (history.go).
	Metrics map[string]*MetricHistory `json:"metrics,omitempty"`
}

// NewState returns an empty state.
func NewState() *State {
	return &State{
		Jobs:    map[string]*Job{},
		Workers: map[string]*Worker{},
		Nodes:   map[string]string{},
		Applied: map[string]Result{},
	}
}

// Apply applies one command and returns its result.
func (s *State) Apply(c *Command) Result {
	s.Index++
	if c.ID != "" {
		if r, ok := s.Applied[c.ID]; ok {
			r.Dup = true
			return r
		}
	}
	r := s.apply(c)
	if c.ID != "" {
		s.Applied[c.ID] = r
		s.AppliedOrder = append(s.AppliedOrder, c.ID)
		s.AppliedBytes += dedupCost(c.ID, r)
		for len(s.AppliedOrder) > 1 && (len(s.AppliedOrder) > dedupWindow || s.AppliedBytes > dedupBytes) {
			old := s.AppliedOrder[0]
			s.AppliedBytes -= dedupCost(old, s.Applied[old])
			delete(s.Applied, old)
			s.AppliedOrder[0] = ""
			s.AppliedOrder = s.AppliedOrder[1:]
		}
	}
	return r
}

func (s *State) apply(c *Command) Result {
	now := c.Time
	switch {
	case c.RegisterNode != nil:
		x := c.RegisterNode
		if x.NodeID == "" {
			return fail(InvalidArgument, "register-node: empty node id")
		}
		s.Nodes[x.NodeID] = x.APIAddr
		return Result{}
	case c.WorkerUp != nil:
		return s.workerUp(c.WorkerUp.Worker, now)
	case c.WorkerDown != nil:
		w, ok := s.Workers[c.WorkerDown.WorkerID]
		if !ok {
			return fail(NotFound, "worker %q is not registered", c.WorkerDown.WorkerID)
		}
		w.Up = false
		w.Since = now
		if w.Job != "" {
			if j := s.Jobs[w.Job]; j != nil {
				s.event(j, now, "worker-lost", fmt.Sprintf("worker %s lost (%s)", w.ID, orDefault(c.WorkerDown.Reason, "registration gone")))
			}
		}
		return Result{}
	case c.Submit != nil:
		return s.submit(&c.Submit.Manifest, now)
	case c.Cancel != nil:
		j, ok := s.Jobs[c.Cancel.Job]
		if !ok {
			return fail(NotFound, "no job named %q", c.Cancel.Job)
		}
		if j.State.Terminal() {
			return fail(FailedPrecondition, "job %q is already %s", j.Name, j.State)
		}
		s.release(j)
		j.State = Cancelled
		j.Message = "cancelled by user"
		s.event(j, now, "cancelled", "cancelled by user")
		return Result{}
	case c.Resume != nil:
		return s.resume(c.Resume, now)
	case c.Schedule != nil:
		return s.schedule(c.Schedule, now)
	case c.Progress != nil:
		return s.progress(c.Progress, now)
	case c.Commit != nil:
		return s.commit(c.Commit, now)
	case c.Complete != nil:
		j, ok := s.Jobs[c.Complete.Job]
		if !ok {
			return fail(NotFound, "no job named %q", c.Complete.Job)
		}
		last := j.LastCheckpoint()
		if j.State != Running || last == nil || last.Step != j.Manifest.TotalSteps() {
			return fail(FailedPrecondition, "job %q has no final checkpoint at step %d", j.Name, j.Manifest.TotalSteps())
		}
		s.release(j)
		j.State = Succeeded
		j.Message = fmt.Sprintf("finished %d steps", last.Step)
		s.event(j, now, "succeeded", j.Message)
		return Result{}
	case c.Fail != nil:
		j, ok := s.Jobs[c.Fail.Job]
		if !ok {
			return fail(NotFound, "no job named %q", c.Fail.Job)
		}
		if j.State.Terminal() {
			return fail(FailedPrecondition, "job %q is already %s", j.Name, j.State)
		}
		s.release(j)
		j.State = Failed
		j.Message = c.Fail.Reason
		s.event(j, now, "failed", c.Fail.Reason)
		return Result{}
	case c.WorkerFailed != nil:
		return s.workerFailed(c.WorkerFailed, now)
	case c.Purge != nil:
		j, ok := s.Jobs[c.Purge.Job]
		if !ok {
			return fail(NotFound, "no job named %q", c.Purge.Job)
		}
		gone := map[int64]bool{}
		for _, st := range c.Purge.Steps {
			gone[st] = true
		}
		kept := j.Garbage[:0]
		for _, g := range j.Garbage {
			if !gone[g.Step] {
				kept = append(kept, g)
			}
		}
		j.Garbage = kept
		if len(j.Garbage) == 0 {
			j.Garbage = nil
		}
		return Result{}
	}
	return fail(InvalidArgument, "empty command")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (s *State) workerUp(info WorkerInfo, now time.Time) Result {
	if info.ID == "" {
		return fail(InvalidArgument, "worker-up: empty worker id")
	}
	w, ok := s.Workers[info.ID]
	if !ok {
		w = &Worker{}
		s.Workers[info.ID] = w
	}
	if ok && w.Up && w.Addr == info.Addr && !w.Unhealthy {
		w.WorkerInfo = info
		return Result{} // a repeated registration event
	}
	// A worker that comes back (or moves) while in a job is a new process:
	// the generation it was in is broken.
	if ok && w.Job != "" && (!w.Up || w.Addr != info.Addr) {
		w.Restarted = true
		if j := s.Jobs[w.Job]; j != nil {
			s.event(j, now, "worker-lost", fmt.Sprintf("worker %s restarted at %s", info.ID, info.Addr))
		}
	}
	w.WorkerInfo = info
	w.Up = true
	w.Unhealthy, w.UnhealthyUntil = false, time.Time{}
	w.Since = now
	return Result{}
}

func (s *State) submit(m *api.Manifest, now time.Time) Result {
	if err := m.Validate(); err != nil {
		return fail(InvalidArgument, "%v", err)
	}
	if _, ok := s.Jobs[m.Name]; ok {
		return fail(AlreadyExists, "a job named %q exists; pick another name", m.Name)
	}
	if r := s.resolveInit(m); r.Err() != nil {
		return r
	}
	j := &Job{Name: m.Name, Manifest: *m, Order: s.NextOrder, State: Pending, Submitted: now, Updated: now,
		Message: "waiting for workers"}
	s.NextOrder++
	s.Jobs[m.Name] = j
	s.event(j, now, "submitted", fmt.Sprintf("%s %s, %d stages, %d steps", m.Recipe, m.Model.Size, len(m.Stages), m.TotalSteps()))
	return Result{}
}

// resolveInit records, for every init source that names another job, the
// committed checkpoint it starts from (the one at its step, or the last),
// and pins that checkpoint in the other job so retention keeps it. Nothing
// changes unless every source resolves.
func (s *State) resolveInit(m *api.Manifest) Result {
	type pin struct {
		j    *Job
		step int64
	}
	var pins []pin
	for _, part := range sortedInitParts(m) {
		src := m.Init[part]
		if src.Job == "" {
			continue
		}
		other, ok := s.Jobs[src.Job]
		if !ok {
			return fail(FailedPrecondition, "init.%s.job: no job named %q", part, src.Job)
		}
		var cp *Checkpoint
		if src.Step == 0 {
			cp = other.LastCheckpoint()
		} else {
			for i := range other.Checkpoints {
				if other.Checkpoints[i].Step == src.Step {
					cp = &other.Checkpoints[i]
				}
			}
		}
		if cp == nil {
			steps := make([]string, len(other.Checkpoints))
			for i, c := range other.Checkpoints {
				steps[i] = fmt.Sprint(c.Step)
			}
			want := "committed checkpoint"
			if src.Step != 0 {
				want = fmt.Sprintf("committed checkpoint at step %d", src.Step)
			}
			return fail(FailedPrecondition, "init.%s: job %q has no %s (retained: [%s])", part, src.Job, want, strings.Join(steps, " "))
		}
		rc := &api.ResolvedCheckpoint{Step: cp.Step, Stage: cp.Stage}
		for _, o := range cp.Objects {
			rc.Objects = append(rc.Objects, api.CheckpointObject{Path: o.Path, SHA256: o.SHA256, Size: o.Size})
		}
		src.Checkpoint = rc
		m.Init[part] = src
		pins = append(pins, pin{other, cp.Step})
	}
	for _, p := range pins {
		if !slices.Contains(p.j.Pinned, p.step) {
			p.j.Pinned = append(p.j.Pinned, p.step)
		}
	}
	return Result{}
}

func sortedInitParts(m *api.Manifest) []string {
	out := make([]string, 0, len(m.Init))
	for k := range m.Init {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *State) resume(x *Resume, now time.Time) Result {
	j, ok := s.Jobs[x.Job]
	if !ok {
		return fail(NotFound, "no job named %q", x.Job)
	}
	if j.State == Succeeded && x.FromStep == 0 {
		return fail(FailedPrecondition, "job %q already succeeded; give --from-step to rerun from a checkpoint", j.Name)
	}
	if x.FromStep != 0 {
		i := sort.Search(len(j.Checkpoints), func(i int) bool { return j.Checkpoints[i].Step >= x.FromStep })
		if i == len(j.Checkpoints) || j.Checkpoints[i].Step != x.FromStep {
			var steps []string
			for _, cp := range j.Checkpoints {
				steps = append(steps, fmt.Sprint(cp.Step))
			}
			return fail(NotFound, "job %q has no committed checkpoint at step %d (committed: %s)", j.Name, x.FromStep, orDefault(strings.Join(steps, ", "), "none"))
		}
		j.Garbage = append(j.Garbage, j.Checkpoints[i+1:]...)
		j.Checkpoints = j.Checkpoints[:i+1]
	}
	s.release(j)
	j.State = Pending
	j.Restarts = 0
	j.Message = "waiting for workers"
	from := "the start"
	if cp := j.LastCheckpoint(); cp != nil {
		from = fmt.Sprintf("step %d", cp.Step)
		j.Step, j.Samples, j.Stage = cp.Step, cp.Samples, resumeStage(j)
	} else {
		j.Step, j.Samples, j.Stage = 0, 0, 0
	}
	s.event(j, now, "resumed", "resuming from "+from)
	return Result{}
}

// release frees the job's workers and ends its generation.
func (s *State) release(j *Job) {
	for _, id := range j.Workers {
		if w := s.Workers[id]; w != nil && w.Job == j.Name {
			w.Job = ""
			w.Restarted = false
			w.Failure, w.FailureKind = "", ""
			w.LastReport = time.Time{}
			w.TokensPerSec = 0
		}
	}
	j.Workers = nil
	j.TokensPerSec = 0
}

func (s *State) schedule(x *Schedule, now time.Time) Result {
	j, ok := s.Jobs[x.Job]
	if !ok {
		return fail(NotFound, "no job named %q", x.Job)
	}
	if j.State.Terminal() {
		return fail(FailedPrecondition, "job %q is %s", j.Name, j.State)
	}
	if x.Generation != j.Generation+1 {
		return fail(FailedPrecondition, "job %q is at generation %d; schedule for %d is stale", j.Name, j.Generation, x.Generation)
	}
	if x.Stage < 0 || x.Stage >= len(j.Manifest.Stages) {
		return fail(InvalidArgument, "job %q has no stage %d", j.Name, x.Stage)
	}
	if len(x.Workers) > 0 {
		ok := false
		for _, w := range j.Manifest.WorldSizes() {
			if w == len(x.Workers) {
				ok = true
			}
		}
		if !ok {
			return fail(InvalidArgument, "job %q cannot run at world size %d (allowed: %v)", j.Name, len(x.Workers), j.Manifest.WorldSizes())
		}
	}
	seen := map[string]bool{}
	for _, id := range x.Workers {
		w := s.Workers[id]
		switch {
		case w == nil:
			return fail(NotFound, "worker %q is not registered", id)
		case !w.Available(now):
			return fail(FailedPrecondition, "worker %q is not available", id)
		case w.Job != "" && w.Job != j.Name:
			return fail(FailedPrecondition, "worker %q is assigned to job %q", id, w.Job)
		case seen[id]:
			return fail(InvalidArgument, "worker %q listed twice", id)
		}
		seen[id] = true
	}
	if x.Restart && !x.Fallback {
		j.Restarts++
	}
	for _, id := range x.Workers {
		s.Workers[id].Unhealthy, s.Workers[id].UnhealthyUntil = false, time.Time{}
	}
	for _, id := range x.Unhealthy {
		if w := s.Workers[id]; w != nil {
			w.Unhealthy, w.UnhealthyUntil = true, now.Add(stallTimeout(j))
		}
	}
	s.release(j)
	if x.Stage != j.Stage {
		// The last stage's numbers say nothing about this one.
		j.Losses, j.LossStep, j.TokensPerSec, j.StepTime = nil, 0, 0, 0
	}
	j.Generation = x.Generation
	j.Stage = x.Stage
	j.Restore = nil
	if cp := j.LastCheckpoint(); cp != nil {
		c := *cp
		j.Restore = &c
		j.Step, j.Samples = cp.Step, cp.Samples
	} else {
		j.Step, j.Samples = 0, 0
	}
	if j.LossStep > j.Step {
		// Reports from the restore point on replace them.
		j.LossStep = j.Step
	}
	j.GenerationStart = now
	j.Updated = now
	rec := GenerationRecord{Generation: j.Generation, Stage: j.Stage, RestoreStep: j.Step, Started: now, Reason: x.Reason, Restart: x.Restart}
	for i, id := range x.Workers {
		rec.Peers = append(rec.Peers, Peer{Rank: i, WorkerID: id, Addr: s.Workers[id].Addr})
	}
	j.History = append(j.History, rec)
	if len(j.History) > maxHistory {
		j.History = append([]GenerationRecord(nil), j.History[len(j.History)-maxHistory:]...)
	}
	if len(x.Workers) == 0 {
		j.State = Pending
		j.Message = orDefault(x.Reason, "waiting for workers")
		s.event(j, now, "waiting", j.Message)
		return Result{}
	}
	j.Workers = append([]string(nil), x.Workers...)
	for _, id := range x.Workers {
		w := s.Workers[id]
		w.Job = j.Name
		w.LastReport = time.Time{}
		w.LastStep = j.Step
	}
	j.State = Running
	j.Message = ""
	kind := "scheduled"
	if x.Restart {
		kind = "restart"
	}
	msg := fmt.Sprintf("generation %d: stage %s, world %d, from step %d", j.Generation, j.Manifest.Stages[j.Stage].Name, len(j.Workers), j.Step)
	if x.Reason != "" {
		msg += " (" + x.Reason + ")"
	}
	s.event(j, now, kind, msg)
	return Result{}
}

func (s *State) progress(x *Progress, now time.Time) Result {
	var r Result
	touched := map[string]bool{}
	for _, p := range x.Reports {
		j := s.Jobs[p.Job]
		w := s.Workers[p.WorkerID]
		if j == nil || w == nil || j.State != Running || p.Generation != j.Generation || w.Job != j.Name {
			r.Skipped++
			continue
		}
		s.recordHistory(j, &p)
		w.LastReport = now
		if p.Step > w.LastStep {
			w.LastStep = p.Step
		}
		w.TokensPerSec = p.TokensPerSec
		inStage := p.Step <= j.Manifest.StageEnd(j.Stage)
		if p.Step > j.Step && inStage {
			j.Step = p.Step
			j.Samples = p.Samples
		}
		// A report may arrive after the checkpoint of its step moved
		// Step: its losses are still the newest.
		if len(p.Losses) > 0 && inStage && (p.Step > j.LossStep || j.Losses == nil) {
			j.Losses, j.LossStep = p.Losses, p.Step
		}
		if p.StepTime > 0 {
			if j.StepTime == 0 {
				j.StepTime = p.StepTime
			} else {
				j.StepTime = (4*j.StepTime + p.StepTime) / 5
			}
		}
		touched[j.Name] = true
	}
	for name := range touched {
		j := s.Jobs[name]
		var tps float64
		for _, id := range j.Workers {
			tps += s.Workers[id].TokensPerSec
		}
		j.TokensPerSec = tps
		j.Updated = now
	}
	if r.Skipped == len(x.Reports) && len(x.Reports) > 0 {
		r.Code, r.Msg = FailedPrecondition, "no report is for a current generation"
	}
	return r
}

func (s *State) commit(x *Commit, now time.Time) Result {
	j, ok := s.Jobs[x.Job]
	if !ok {
		return fail(NotFound, "no job named %q", x.Job)
	}
	if j.State != Running || x.Generation != j.Generation {
		return fail(FailedPrecondition, "job %q is %s at generation %d; checkpoint from generation %d refused", j.Name, j.State, j.Generation, x.Generation)
	}
	if w := s.Workers[x.WorkerID]; w == nil || w.Job != j.Name {
		return fail(FailedPrecondition, "worker %q is not in job %q", x.WorkerID, j.Name)
	}
	if len(x.Objects) == 0 {
		return fail(InvalidArgument, "checkpoint at step %d has no objects", x.Step)
	}
	for i, o := range x.Objects {
		if o.Path == "" || len(o.SHA256) != 64 || o.Size < 0 {
			return fail(InvalidArgument, "checkpoint at step %d: objects[%d] (%q) needs a path, a 64-hex-digit sha256 and a size", x.Step, i, o.Path)
		}
	}
	if last := j.LastCheckpoint(); last != nil && x.Step <= last.Step {
		if x.Step == last.Step {
			return Result{} // another rank, or a retry, committed it already
		}
		return fail(FailedPrecondition, "checkpoint at step %d is older than the last committed one (%d)", x.Step, last.Step)
	}
	start := int64(0)
	if j.Restore != nil {
		start = j.Restore.Step
	}
	if x.Step <= start || x.Step > j.Manifest.StageEnd(j.Stage) {
		return fail(InvalidArgument, "checkpoint step %d is outside this generation's range (%d, %d]", x.Step, start, j.Manifest.StageEnd(j.Stage))
	}
	s.recordHistory(j, &ProgressReport{WorkerID: x.WorkerID, Steps: x.Steps})
	cp := Checkpoint{Step: x.Step, Stage: j.Stage, Generation: j.Generation, Samples: x.Samples,
		Objects: append([]ObjectInfo(nil), x.Objects...), Committed: now}
	j.Checkpoints = append(j.Checkpoints, cp)
	if x.Step > j.Step {
		j.Step, j.Samples = x.Step, x.Samples
	}
	ends := stageEnds(&j.Manifest)
	for _, p := range j.Pinned {
		ends[p] = true
	}
	keep, drop := Retain(j.Checkpoints, j.Manifest.Checkpoint.Keep, ends, j.Restore)
	j.Checkpoints = keep
	j.Garbage = append(j.Garbage, drop...)
	j.Updated = now
	s.event(j, now, "checkpoint", fmt.Sprintf("committed step %d (%d objects)", x.Step, len(x.Objects)))
	return Result{}
}

// maxFailureLen bounds the error text a worker failure keeps (it ends up in
// events and the job's message).
const maxFailureLen = 512

func (s *State) workerFailed(x *WorkerFailed, now time.Time) Result {
	j, ok := s.Jobs[x.Job]
	if !ok {
		return fail(NotFound, "no job named %q", x.Job)
	}
	if j.State != Running || x.Generation != j.Generation {
		return fail(FailedPrecondition, "job %q is %s at generation %d; failure report from generation %d refused as stale", j.Name, j.State, j.Generation, x.Generation)
	}
	w := s.Workers[x.WorkerID]
	if w == nil || w.Job != j.Name {
		return fail(FailedPrecondition, "worker %q is not in job %q", x.WorkerID, j.Name)
	}
	msg := strings.TrimSpace(x.Error)
	if msg == "" {
		msg = "unspecified error"
	}
	if len(msg) > maxFailureLen {
		msg = msg[:maxFailureLen] + "…"
	}
	if w.Failure != "" {
		return Result{} // one failure per worker and generation is enough
	}
	w.Failure, w.FailureKind = msg, x.Kind
	s.event(j, now, "worker-failed", fmt.Sprintf("worker %s failed in generation %d: %s", w.ID, j.Generation, msg))
	if x.Kind == FailCorruptCheckpoint {
		s.setAside(j, x.CheckpointStep, msg, now)
	}
	return Result{}
}

// setAside moves the job's committed checkpoint at step, the one its
// generation restored from, out of Checkpoints into Corrupt, so that the
// next generation restores from the one before. Other ranks reporting the
// same checkpoint find it gone already. A report about any other
// checkpoint changes nothing here; planRunning fails the job for it.
func (s *State) setAside(j *Job, step int64, reason string, now time.Time) {
	if j.Restore == nil || j.Restore.Step != step {
		return
	}
	for i, cp := range j.Checkpoints {
		if cp.Step != step {
			continue
		}
		j.Checkpoints = append(j.Checkpoints[:i:i], j.Checkpoints[i+1:]...)
		j.Corrupt = append(j.Corrupt, CorruptCheckpoint{Checkpoint: cp, Reason: reason, Found: now})
		if len(j.Corrupt) > maxCorrupt {
			j.Corrupt = append([]CorruptCheckpoint(nil), j.Corrupt[len(j.Corrupt)-maxCorrupt:]...)
		}
		to := "the start"
		if last := j.LastCheckpoint(); last != nil {
			to = fmt.Sprintf("step %d", last.Step)
		}
		s.event(j, now, "checkpoint-corrupt", fmt.Sprintf("checkpoint at step %d set aside as corrupt; falling back to %s", step, to))
		return
	}
}

// fallenBack reports whether the job's restore checkpoint was set aside
// as corrupt in the current generation.
func fallenBack(j *Job) bool {
	if j.Restore == nil {
		return false
	}
	for _, c := range j.Corrupt {
		if c.Step == j.Restore.Step && c.Generation == j.Restore.Generation {
			return true
		}
	}
	return false
}

func stageEnds(m *api.Manifest) map[int64]bool {
	ends := map[int64]bool{}
	for i := range m.Stages {
		ends[m.StageEnd(i)] = true
	}
	return ends
}

// Retain splits committed checkpoints (ascending by step) into those kept
// — the last keep, every stage's final one, and the one the current
// generation restored from — and those to delete. It is the reference for
// the retention policy.
func Retain(cps []Checkpoint, keep int, stageEnds map[int64]bool, restore *Checkpoint) (kept, dropped []Checkpoint) {
	for i, cp := range cps {
		recent := i >= len(cps)-keep
		if recent || stageEnds[cp.Step] || (restore != nil && restore.Step == cp.Step) {
			kept = append(kept, cp)
		} else {
			dropped = append(dropped, cp)
		}
	}
	return kept, dropped
}

func (s *State) event(j *Job, now time.Time, kind, msg string) {
	s.NextEvent++
	j.Events = append(j.Events, Event{Seq: s.NextEvent, Job: j.Name, Kind: kind, Msg: msg, Time: now})
	if len(j.Events) > maxEvents {
		j.Events = append([]Event(nil), j.Events[len(j.Events)-maxEvents:]...)
	}
	j.Updated = now
}

// Marshal encodes the whole state (for snapshots).
func (s *State) Marshal() ([]byte, error) { return json.Marshal(s) }

// UnmarshalState decodes a state written by Marshal.
func UnmarshalState(b []byte) (*State, error) {
	s := NewState()
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("decode coordinator state: %w", err)
	}
	if s.Jobs == nil {
		s.Jobs = map[string]*Job{}
	}
	if s.Workers == nil {
		s.Workers = map[string]*Worker{}
	}
	if s.Nodes == nil {
		s.Nodes = map[string]string{}
	}
	if s.Applied == nil {
		s.Applied = map[string]Result{}
	}
	if s.AppliedBytes == 0 && len(s.AppliedOrder) > 0 {
		// A snapshot from before the byte bound: count it.
		for _, id := range s.AppliedOrder {
			s.AppliedBytes += dedupCost(id, s.Applied[id])
		}
	}
	return s, nil
}

// Clone returns a deep copy.
func (s *State) Clone() *State {
	b, err := s.Marshal()
	if err != nil {
		panic(err) // the state holds only JSON-encodable values
	}
	c, err := UnmarshalState(b)
	if err != nil {
		panic(err)
	}
	return c
}

// SortedJobs returns the jobs in submission order.
func (s *State) SortedJobs() []*Job {
	js := make([]*Job, 0, len(s.Jobs))
	for _, j := range s.Jobs {
		js = append(js, j)
	}
	sort.Slice(js, func(a, b int) bool { return js[a].Order < js[b].Order })
	return js
}

// SortedWorkers returns the workers ordered by ID.
func (s *State) SortedWorkers() []*Worker {
	ws := make([]*Worker, 0, len(s.Workers))
	for _, w := range s.Workers {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(a, b int) bool { return ws[a].ID < ws[b].ID })
	return ws
}
