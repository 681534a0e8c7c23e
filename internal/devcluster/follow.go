package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
)

// RunJob submits m, follows it with progress bars and returns it once it
// succeeded.
func (c *Cluster) RunJob(ctx context.Context, m *api.Manifest, out io.Writer) (*loompb.Job, *ProgressView, error) {
	if _, err := c.Submit(ctx, m); err != nil {
		return nil, nil, fmt.Errorf("submit %s: %w", m.Name, err)
	}
	fmt.Fprintf(out, "  job          %s: %d stages, checkpoints in s3://%s/checkpoints/%s/\n", m.Name, len(m.Stages), Bucket, m.Name)
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

// ProgressView draws one progress bar per stage on a terminal, or prints
// a line per step otherwise.
type ProgressView struct {
	out      io.Writer
	m        *api.Manifest
	tty      bool
	stage    int
	lastStep int64
	drawn    bool
	printed  int64 // stage step of the last plain line
	// losses holds each stage's first and last reported loss.
	losses map[int][2]float64
}

func NewProgressView(out io.Writer, m *api.Manifest) *ProgressView {
	tty := false
	if f, ok := out.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &ProgressView{out: out, m: m, tty: tty, stage: -1, lastStep: -1, losses: map[int][2]float64{}}
}

func (v *ProgressView) line(s string) {
	if v.drawn {
		fmt.Fprintln(v.out)
		v.drawn = false
	}
	fmt.Fprintln(v.out, s)
}

func (v *ProgressView) event(ev *loompb.JobEvent) {
	if ev.Kind != "progress" && ev.Message != "" {
		v.line(fmt.Sprintf("  [%s] %s", ev.Kind, ev.Message))
	}
	j := ev.State
	if j == nil || j.State != "running" {
		return
	}
	stage := int(j.Stage)
	if stage != v.stage {
		v.stage = stage
		v.line(fmt.Sprintf("stage %d/%d %s (%d steps)", stage+1, len(v.m.Stages), j.StageName, v.m.Stages[stage].Steps))
	}
	if j.Step == v.lastStep {
		return
	}
	v.lastStep = j.Step
	start := int64(0)
	if stage > 0 {
		start = v.m.StageEnd(stage - 1)
	}
	n, total := j.Step-start, v.m.Stages[stage].Steps
	loss, ok := j.Losses["loss"]
	if n <= 0 || !ok {
		return // no step of this stage reported yet
	}
	l, seen := v.losses[stage]
	if !seen {
		l[0] = loss
	}
	l[1] = loss
	v.losses[stage] = l
	var terms []string
	keys := make([]string, 0, len(j.Losses))
	for k := range j.Losses {
		if k != "loss" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		terms = append(terms, fmt.Sprintf("%s %.3f", k, j.Losses[k]))
	}
	stats := fmt.Sprintf("%d/%d loss %.4f (%s) %.0f tok/s %.2fs/step", n, total, j.Losses["loss"], strings.Join(terms, " "), j.TokensPerSec, j.StepTimeSeconds)
	if !v.tty {
		// Plain lines: the stage's first report, one per 10 steps, its last.
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
	if v.drawn {
		fmt.Fprintln(v.out)
		v.drawn = false
	}
}
