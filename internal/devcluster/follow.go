package devcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/lossline"
	"github.com/loomtrain/loom/trainer"
)

// RunJob submits m, follows it with progress bars and returns it once it
// succeeded. A job of m's name may exist already (a kept --data-dir):
// the same job (sameJob) still running or pending is followed, one that
// failed or was cancelled is resumed from its last checkpoint, and one
// that succeeded is returned as it is when reuse is set; otherwise m is
// renamed NAME-2, NAME-3, ... until the name is free.
func (c *Cluster) RunJob(ctx context.Context, m *api.Manifest, reuse bool, out io.Writer) (*loompb.Job, *ProgressView, error) {
	base := m.Name
	for n := 2; ; n++ {
		j, err := c.GetJob(ctx, m.Name)
		if status.Code(err) == codes.NotFound {
			if _, err := c.Submit(ctx, m); err != nil {
				return nil, nil, fmt.Errorf("submit %s: %w", m.Name, err)
			}
			fmt.Fprintf(out, "  job          %s: %d stages, checkpoints in s3://%s/checkpoints/%s/\n", m.Name, len(m.Stages), Bucket, m.Name)
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("looking up job %s: %w", m.Name, err)
		}
		same := sameJob(j, m)
		switch {
		case same && (j.State == "running" || j.State == "pending"):
			fmt.Fprintf(out, "  job          %s: in this data dir already, %s at step %d of %d; following it\n", m.Name, j.State, j.Step, j.TotalSteps)
		case same && (j.State == "failed" || j.State == "cancelled"):
			if _, err := c.Resume(ctx, m.Name); err != nil {
				return nil, nil, fmt.Errorf("resume %s: %w", m.Name, err)
			}
			fmt.Fprintf(out, "  job          %s: in this data dir already (%s at step %d); resumed from its last checkpoint\n", m.Name, j.State, j.Step)
		case same && j.State == "succeeded" && reuse:
			fmt.Fprintf(out, "  job          %s: succeeded in this data dir already (%d steps); using its checkpoints\n", m.Name, j.Step)
			return j, NewProgressView(io.Discard, m), nil
		default:
			m.Name = fmt.Sprintf("%s-%d", base, n)
			continue
		}
		break
	}
	view := NewProgressView(out, m)
	// The job needs elastic.min workers: when so many have exited that it
	// cannot run, say which instead of waiting for it forever.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dead := make(chan string, 1)
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-fctx.Done():
				return
			case <-tick.C:
			}
			c.mu.Lock()
			ws := append([]*Proc(nil), c.workers...)
			c.mu.Unlock()
			var gone []string
			for _, p := range ws {
				select {
				case <-p.Done:
					gone = append(gone, fmt.Sprintf("%s (%v, log %s)", p.ID, p.ExitErr, p.LogPath))
				default:
				}
			}
			if left := len(ws) - len(gone); left < m.Elastic.Min {
				dead <- fmt.Sprintf("job %s needs %d workers and %d are left: exited %s", m.Name, m.Elastic.Min, left, strings.Join(gone, ", "))
				cancel()
				return
			}
		}
	}()
	job, err := c.follow(fctx, m, view)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(out, "\ninterrupted")
			return nil, nil, ErrInterrupted
		}
		select {
		case msg := <-dead:
			return nil, nil, errors.New(msg)
		default:
		}
		return nil, nil, err
	}
	if job.State != "succeeded" {
		return nil, nil, fmt.Errorf("job %s %s: %s (logs in %s)", job.Name, job.State, job.Message, filepath.Join(c.dir, "logs"))
	}
	return job, view, nil
}

// follow watches the job until it ends, feeding the view.
func (c *Cluster) follow(ctx context.Context, m *api.Manifest, v *ProgressView) (*loompb.Job, error) {
	var since int64
	for {
		cc, err := c.Dial()
		if err != nil {
			return nil, err
		}
		s, err := loompb.NewJobsClient(cc).WatchJob(ctx, &loompb.WatchJobRequest{Job: m.Name, SinceSeq: since})
		if err == nil {
			for {
				ev, err := s.Recv()
				if err != nil {
					break
				}
				if ev.Seq > since {
					since = ev.Seq
				}
				v.event(ev)
				if st := ev.State; st != nil && (st.State == "succeeded" || st.State == "failed" || st.State == "cancelled") {
					cc.Close()
					v.done()
					return st, nil
				}
			}
		}
		cc.Close()
		if ctx.Err() != nil {
			v.done()
			return nil, ctx.Err()
		}
		time.Sleep(500 * time.Millisecond) // the coordinator restarts or changes leader
	}
}

// sameJob reports whether the coordinator's job j runs manifest m: the
// same manifest apart from the name, and init blocks naming the same
// jobs (the coordinator's copy also records the checkpoints they
// resolved to).
func sameJob(j *loompb.Job, m *api.Manifest) bool {
	have, err := api.ParseManifest(j.Name, j.ManifestYaml)
	if err != nil {
		return false
	}
	a, b := *have, *m
	if len(a.Init) != len(b.Init) {
		return false
	}
	for part, src := range b.Init {
		if a.Init[part].Job != src.Job {
			return false
		}
	}
	a.Init, b.Init, a.Name = nil, nil, b.Name
	x, err1 := a.Normalized()
	y, err2 := b.Normalized()
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// ProgressView draws one progress bar per stage on a terminal, or prints
// a line per step otherwise. Each loss line shows the weights that make
// the total of its terms (lossline). Committed checkpoints are gathered
// into one line per stage (or per maxCheckpointLine of them), not one
// line each.
type ProgressView struct {
	out      io.Writer
	m        *api.Manifest
	tty      bool
	stage    int
	lastStep int64
	lastLoss float64
	drawn    bool
	printed  int64 // stage step of the last plain line
	// losses holds each stage's first and last reported loss.
	losses map[int][2]float64
	// weights are each stage's loss weights (nil: unknown).
	weights map[int]map[string]float64
	// cps are the steps of committed checkpoints not printed yet.
	cps []int64
}

// maxCheckpointLine is how many checkpoint steps one line gathers.
const maxCheckpointLine = 8

// NewProgressView returns a view of job m's events on out.
func NewProgressView(out io.Writer, m *api.Manifest) *ProgressView {
	tty := false
	if f, ok := out.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &ProgressView{out: out, m: m, tty: tty, stage: -1, lastStep: -1, losses: map[int][2]float64{}, weights: map[int]map[string]float64{}}
}

// StageLosses returns stage i's first and last reported loss.
func (v *ProgressView) StageLosses(i int) (first, last float64, ok bool) {
	l, ok := v.losses[i]
	return l[0], l[1], ok
}

func (v *ProgressView) line(s string) {
	if v.drawn {
		fmt.Fprintln(v.out)
		v.drawn = false
	}
	fmt.Fprintln(v.out, s)
}

// flushCheckpoints prints the gathered checkpoint steps as one line.
func (v *ProgressView) flushCheckpoints() {
	if len(v.cps) == 0 {
		return
	}
	steps := make([]string, len(v.cps))
	for i, s := range v.cps {
		steps[i] = fmt.Sprint(s)
	}
	word := "step"
	if len(steps) > 1 {
		word = "steps"
	}
	v.line(fmt.Sprintf("  [checkpoint] committed %s %s", word, strings.Join(steps, ", ")))
	v.cps = v.cps[:0]
}

func (v *ProgressView) stageWeights(stage int) map[string]float64 {
	w, ok := v.weights[stage]
	if !ok {
		if st, err := trainer.Resolve(v.m, stage); err == nil {
			w = st.Losses
		}
		v.weights[stage] = w
	}
	return w
}

func (v *ProgressView) event(ev *loompb.JobEvent) {
	var cp int64
	if _, err := fmt.Sscanf(ev.Message, "committed step %d", &cp); ev.Kind == "checkpoint" && err == nil {
		v.cps = append(v.cps, cp)
		if len(v.cps) >= maxCheckpointLine {
			v.flushCheckpoints()
		}
	} else if ev.Kind != "progress" && ev.Message != "" {
		v.flushCheckpoints()
		v.line(fmt.Sprintf("  [%s] %s", ev.Kind, ev.Message))
	}
	j := ev.State
	if j == nil || j.State != "running" {
		return
	}
	stage := int(j.Stage)
	if stage != v.stage {
		v.flushCheckpoints()
		v.stage = stage
		v.line(fmt.Sprintf("stage %d/%d %s (%d steps)", stage+1, len(v.m.Stages), j.StageName, v.m.Stages[stage].Steps))
	}
	loss, ok := j.Losses["loss"]
	// A checkpoint moves the step, a report the losses: either is news.
	if j.Step == v.lastStep && (!ok || loss == v.lastLoss) {
		return
	}
	v.lastStep, v.lastLoss = j.Step, loss
	start := int64(0)
	if stage > 0 {
		start = v.m.StageEnd(stage - 1)
	}
	n, total := j.Step-start, v.m.Stages[stage].Steps
	if n <= 0 || !ok {
		return // no step of this stage reported yet
	}
	l, seen := v.losses[stage]
	if !seen {
		l[0] = loss
	}
	l[1] = loss
	v.losses[stage] = l
	stats := fmt.Sprintf("%d/%d %s, %.0f tok/s %.2fs/step", n, total, lossline.Format(j.Losses, v.stageWeights(stage)), j.TokensPerSec, j.StepTimeSeconds)
	if !v.tty {
		// Plain lines: the stage's first report, one per 10 steps, its
		// last (and the last step's losses when they come after it).
		if !seen || n/10 > v.printed/10 || n >= total {
			fmt.Fprintf(v.out, "  %s step %s\n", j.StageName, stats)
			v.printed = n
		}
		return
	}
	const width = 30
	fill := int(int64(width) * min(n, total) / max(total, 1))
	fmt.Fprintf(v.out, "\r  [%s%s] %s\x1b[K", strings.Repeat("█", fill), strings.Repeat("░", width-fill), stats)
	v.drawn = true
}

func (v *ProgressView) done() {
	v.flushCheckpoints()
	if v.drawn {
		fmt.Fprintln(v.out)
		v.drawn = false
	}
}
