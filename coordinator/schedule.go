package coordinator

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Deletion is a retired checkpoint whose objects the leader must delete
// from the object store before applying a Purge.
type Deletion struct {
	Job        string
	Checkpoint Checkpoint
}

// Decision is what the scheduler wants done: commands to apply through Raft
// (in order) and checkpoint objects to delete.
type Decision struct {
	Commands  []*Command
	Deletions []Deletion
}

// Plan is the leader's scheduler: a pure function of the state and the time.
// It decides
//   - failure handling: a running job with a lost, restarted, stalled or
//     failed (WorkerFailed) rank gets a new generation on its remaining workers plus free ones, resumed
//     from the last committed checkpoint, or fails once its restarts are
//     spent;
//   - completion and stage advancement once the stage's final checkpoint is
//     committed;
//   - elastic growth right after a checkpoint, when free workers allow a
//     larger world;
//   - gang scheduling of pending jobs in submission order, at the largest
//     world size in the elastic range that the free workers allow and that
//     divides the global batch;
//   - deletion of retired checkpoints.
//
// The commands carry now as their time and no ID: the leader applies them
// once per decision, and a stale one is refused by the generation check.
func Plan(s *State, now time.Time) Decision {
	var d Decision
	taken := map[string]bool{}
	var idle []*Worker // free workers sorted by ID, computed once
	free := func() []*Worker {
		if idle == nil {
			idle = []*Worker{}
			var setAside []*Worker // stalled once, their time set aside over: last
			for _, w := range s.SortedWorkers() {
				switch {
				case w.Job != "" || !w.Available(now):
				case w.Unhealthy:
					setAside = append(setAside, w)
				default:
					idle = append(idle, w)
				}
			}
			idle = append(idle, setAside...)
		}
		out := make([]*Worker, 0, len(idle))
		for _, w := range idle {
			if !taken[w.ID] {
				out = append(out, w)
			}
		}
		return out
	}
	emit := func(c *Command) {
		c.Time = now
		d.Commands = append(d.Commands, c)
		if c.Schedule != nil {
			for _, id := range c.Schedule.Workers {
				taken[id] = true
			}
		}
	}
	for _, j := range s.SortedJobs() {
		for _, g := range j.Garbage {
			d.Deletions = append(d.Deletions, Deletion{Job: j.Name, Checkpoint: g})
		}
		switch j.State {
		case Running:
			if c := planRunning(s, j, now, free); c != nil {
				emit(c)
			}
		case Pending:
			stage := resumeStage(j)
			pool := free()
			ids := pick(j, nil, pool)
			if len(ids) == 0 {
				continue
			}
			emit(&Command{Schedule: &Schedule{Job: j.Name, Generation: j.Generation + 1, Stage: stage, Workers: ids}})
		}
	}
	return d
}

// resumeStage is the stage a job restarting from its last checkpoint runs:
// a checkpoint at a stage boundary starts the next stage.
func resumeStage(j *Job) int {
	cp := j.LastCheckpoint()
	if cp == nil {
		return 0
	}
	return j.Manifest.StageAt(cp.Step)
}

func planRunning(s *State, j *Job, now time.Time, free func() []*Worker) *Command {
	m := &j.Manifest
	var lost, restarted, stalled, failed, fatal []string
	var healthy []*Worker
	for _, id := range j.Workers {
		w := s.Workers[id]
		switch {
		case w == nil || !w.Up || w.Unhealthy:
			lost = append(lost, id)
			continue
		case w.Restarted:
			restarted = append(restarted, id)
		case w.Failure != "":
			failed = append(failed, fmt.Sprintf("%s failed: %s", id, w.Failure))
			if w.FailureKind == FailCorruptData || (w.FailureKind == FailCorruptCheckpoint && !fallenBack(j)) {
				fatal = append(fatal, fmt.Sprintf("%s failed: %s", id, w.Failure))
			}
		case stalledFor(j, w, now) > 0:
			stalled = append(stalled, id)
		}
		healthy = append(healthy, w)
	}
	if len(lost)+len(restarted)+len(stalled)+len(failed) > 0 {
		var reasons []string
		// A failed worker stays in the pool: its error may be the job's
		// (a deterministic trainer error), which max_restarts bounds.
		reasons = append(reasons, failed...)
		if len(lost) > 0 {
			reasons = append(reasons, "lost "+strings.Join(lost, ","))
		}
		if len(restarted) > 0 {
			reasons = append(reasons, "restarted "+strings.Join(restarted, ","))
		}
		var unhealthy []string
		if len(stalled) > 0 {
			reasons = append(reasons, fmt.Sprintf("stalled %s (no step for %s)", strings.Join(stalled, ","), stallTimeout(j).Round(time.Second)))
			// When every rank stalls the culprit is unknown (a hung collective
			// stalls all of them): restart them all. Otherwise the stalled
			// ones are set aside.
			if len(stalled) < len(j.Workers)-len(lost) {
				unhealthy = stalled
				keep := healthy[:0]
				for _, w := range healthy {
					if !contains(stalled, w.ID) {
						keep = append(keep, w)
					}
				}
				healthy = keep
			}
		}
		reason := strings.Join(reasons, "; ")
		if len(fatal) > 0 {
			// Corrupt bytes stay corrupt: another generation would read
			// the same ones.
			return &Command{Fail: &Fail{Job: j.Name, Reason: strings.Join(fatal, "; ") + " (corrupt bytes are not retried: repair or re-ingest the object, or loom resume --from an intact checkpoint)"}}
		}
		// A fall-back from a corrupt checkpoint is not the job's failure:
		// it does not count against max_restarts when it is the only cause.
		fallback := fallenBack(j) && len(lost)+len(restarted)+len(stalled) == 0
		if j.Restarts >= m.Failure.MaxRestarts && !fallback {
			return &Command{Fail: &Fail{Job: j.Name, Reason: fmt.Sprintf("%s after %d restarts (failure.max_restarts)", reason, j.Restarts)}}
		}
		ids := pick(j, healthy, free())
		return &Command{Schedule: &Schedule{Job: j.Name, Generation: j.Generation + 1, Stage: resumeStage(j),
			Workers: ids, Restart: true, Fallback: fallback, Unhealthy: unhealthy, Reason: reason}}
	}
	cp := j.LastCheckpoint()
	if cp == nil || cp.Generation != j.Generation {
		return nil
	}
	if cp.Step == m.TotalSteps() {
		return &Command{Complete: &Complete{Job: j.Name}}
	}
	if cp.Step == m.StageEnd(j.Stage) {
		ids := pick(j, healthy, free())
		return &Command{Schedule: &Schedule{Job: j.Name, Generation: j.Generation + 1, Stage: j.Stage + 1, Workers: ids,
			Reason: fmt.Sprintf("stage %s done", m.Stages[j.Stage].Name)}}
	}
	// Grow right after a checkpoint, so little work is repeated.
	if len(j.Workers) < m.Elastic.Max && cp.Step == j.Step {
		ids := pick(j, healthy, free())
		if len(ids) > len(j.Workers) {
			return &Command{Schedule: &Schedule{Job: j.Name, Generation: j.Generation + 1, Stage: j.Stage, Workers: ids,
				Reason: fmt.Sprintf("growing from %d to %d workers", len(j.Workers), len(ids))}}
		}
	}
	return nil
}

// stallTimeout is how long a rank may go without a step.
func stallTimeout(j *Job) time.Duration {
	t := time.Duration(j.Manifest.Failure.StallFactor * float64(j.StepTime))
	if g := time.Duration(j.Manifest.Failure.StallGrace); t < g {
		t = g
	}
	return t
}

// stalledFor returns by how much w has overrun the stall timeout (<= 0: not
// stalled). Before its first report the generation's start counts.
func stalledFor(j *Job, w *Worker, now time.Time) time.Duration {
	last := w.LastReport
	if last.IsZero() || last.Before(j.GenerationStart) {
		last = j.GenerationStart
	}
	return now.Sub(last) - stallTimeout(j)
}

// pick chooses the workers of a job's next generation: members first, then
// free workers, as many as the largest allowed world size that fits; ranks
// are ordered by (host, id) so that ring neighbours share hosts. It returns
// nil when not even the smallest world size fits.
func pick(j *Job, members, free []*Worker) []string {
	pool := append(append([]*Worker(nil), members...), free...)
	n := 0
	for _, w := range j.Manifest.WorldSizes() {
		if w <= len(pool) {
			n = w
		}
	}
	if n == 0 {
		return nil
	}
	chosen := append([]*Worker(nil), pool[:n]...)
	sort.Slice(chosen, func(a, b int) bool {
		if chosen[a].Host != chosen[b].Host {
			return chosen[a].Host < chosen[b].Host
		}
		return chosen[a].ID < chosen[b].ID
	})
	ids := make([]string, n)
	for i, w := range chosen {
		ids[i] = w.ID
	}
	return ids
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
