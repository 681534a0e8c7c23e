package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/lossline"
	"github.com/loomtrain/loom/trainer"
)

func init() { rootCmd.AddCommand(newStatusCmd()) }

func newStatusCmd() *cobra.Command {
	var (
		cf       clientFlags
		watch    bool
		asJSON   bool
		interval time.Duration
	)
	c := &cobra.Command{
		Use:   "status [JOB]",
		Short: "Show jobs with a progress bar each (or one job in detail); --watch follows them",
		Long: `Without JOB, lists every job: state, stage, step out of the total with a progress
bar, world size, generation, restarts, latest losses and throughput. With JOB,
shows that job in detail: stage, progress, speed and ETA, losses, workers in
rank order, committed checkpoints and a plot of the loss of each stage (from
the coordinator's metric history); with --watch also each event as it
happens (scheduled, checkpoint, restart, stage, ...).

--watch keeps the display up to date until interrupted (for one job, until it
finishes: then it exits 0 when the job succeeded and 1 when it failed or was
cancelled, so that a script can wait for a job with it). --json prints the
coordinator's answer as JSON instead.

Example:
  loom status
  loom status blip2-small --watch
  loom status blip2-small --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc, err := cf.dial()
			if err != nil {
				return err
			}
			defer cc.Close()
			jobs := jobsClient(cc)
			out := cmd.OutOrStdout()
			tty := false
			if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				tty = true
			}
			show := func(render func(io.Writer)) {
				if watch && tty {
					fmt.Fprint(out, "\033[H\033[2J")
				}
				render(out)
				if watch && !tty {
					fmt.Fprintln(out)
				}
			}
			if len(args) == 1 && watch && !asJSON {
				st, err := jobs.WatchJob(cmd.Context(), &loompb.WatchJobRequest{Job: args[0]})
				if err != nil {
					return rpcError(cf.addr, err)
				}
				var loss *loompb.MetricSeries
				var lossAt time.Time
				var last *loompb.Job
				for {
					ev, err := st.Recv()
					if err == io.EOF {
						return watchEnd(last)
					}
					if err != nil {
						if cmd.Context().Err() != nil {
							return nil
						}
						return rpcError(cf.addr, err)
					}
					if ev.State != nil {
						last = ev.State
						if time.Since(lossAt) >= time.Second {
							ctx, cancel := cf.ctx(cmd.Context())
							loss, lossAt = fetchLoss(ctx, jobs, args[0]), time.Now()
							cancel()
						}
						show(func(w io.Writer) {
							renderJob(w, ev.State, time.Now())
							renderLossPlot(w, ev.State, loss)
							if ev.Kind != "progress" {
								fmt.Fprintf(w, "  event     %s: %s\n", ev.Kind, ev.Message)
							}
						})
					}
				}
			}
			for {
				ctx, cancel := cf.ctx(cmd.Context())
				if len(args) == 1 {
					j, err := jobs.GetJob(ctx, &loompb.GetJobRequest{Job: args[0]})
					var loss *loompb.MetricSeries
					if err == nil && !asJSON {
						loss = fetchLoss(ctx, jobs, args[0])
					}
					cancel()
					if err != nil {
						return rpcError(cf.addr, err)
					}
					if asJSON {
						fmt.Fprintln(out, protojson.Format(j))
					} else {
						show(func(w io.Writer) { renderJob(w, j, time.Now()); renderLossPlot(w, j, loss) })
					}
				} else {
					resp, err := jobs.ListJobs(ctx, &loompb.ListJobsRequest{})
					cancel()
					if err != nil {
						return rpcError(cf.addr, err)
					}
					if asJSON {
						fmt.Fprintln(out, protojson.Format(resp))
					} else {
						show(func(w io.Writer) { renderJobs(w, resp.Jobs) })
					}
				}
				if !watch {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	cf.register(c)
	c.Flags().BoolVarP(&watch, "watch", "w", false, "keep the display up to date")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().DurationVar(&interval, "interval", time.Second, "refresh period of --watch for the job list")
	return c
}

// progressBar renders done/total as a bar of width cells and a percentage.
func progressBar(done, total int64, width int) string {
	if total <= 0 {
		total = 1
	}
	if done < 0 {
		done = 0
	}
	if done > total {
		done = total
	}
	filled := int(done * int64(width) / total)
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]" + fmt.Sprintf(" %3d%%", done*100/total)
}

func formatLosses(l map[string]float64) string {
	if len(l) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.4g", k, l[k]))
	}
	return strings.Join(parts, " ")
}

// stageWeights returns the loss weights of the job's current stage, from
// the manifest the coordinator holds (nil when it cannot tell).
func stageWeights(j *loompb.Job) map[string]float64 {
	if len(j.ManifestYaml) == 0 {
		return nil
	}
	m, err := api.ParseManifest(j.Name, j.ManifestYaml)
	if err != nil {
		return nil
	}
	st, err := trainer.Resolve(m, int(j.Stage))
	if err != nil {
		return nil
	}
	return st.Losses
}

func stageLabel(j *loompb.Job) string {
	if j.Stages == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d %s", j.Stage+1, j.Stages, j.StageName)
}

// renderJobs prints the job table.
func renderJobs(w io.Writer, jobs []*loompb.Job) {
	if len(jobs) == 0 {
		fmt.Fprintln(w, "no jobs; submit one with: loom submit MANIFEST.yaml")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATE\tSTAGE\tSTEP\tPROGRESS\tWORLD\tGEN\tRESTARTS\tLOSS\tTOKENS/S")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%d\t%d\t%d\t%s\t%.0f\n", j.Name, j.State, stageLabel(j), j.Step, j.TotalSteps,
			progressBar(j.Step, j.TotalSteps, 20), j.World, j.Generation, j.Restarts, formatLosses(j.Losses), j.TokensPerSec)
	}
	tw.Flush()
}

// renderJob prints one job in detail.
func renderJob(w io.Writer, j *loompb.Job, now time.Time) {
	fmt.Fprintf(w, "job %s (%s): %s", j.Name, j.Recipe, j.State)
	if j.Message != "" {
		fmt.Fprintf(w, " — %s", j.Message)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  stage     %s\n", stageLabel(j))
	fmt.Fprintf(w, "  progress  %s  step %d/%d, %d samples\n", progressBar(j.Step, j.TotalSteps, 30), j.Step, j.TotalSteps, j.SamplesConsumed)
	if j.StepTimeSeconds > 0 && j.State == "running" && j.Step < j.TotalSteps {
		eta := time.Duration(float64(j.TotalSteps-j.Step) * j.StepTimeSeconds * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(w, "  speed     %.3fs/step, %.0f tokens/s, ETA %s\n", j.StepTimeSeconds, j.TokensPerSec, eta)
	}
	fmt.Fprintf(w, "  losses    %s\n", lossline.Format(j.Losses, stageWeights(j)))
	fmt.Fprintf(w, "  world     %d (generation %d, %d restarts)", j.World, j.Generation, j.Restarts)
	if len(j.Workers) > 0 {
		fmt.Fprintf(w, ": %s", strings.Join(j.Workers, " "))
	}
	fmt.Fprintln(w)
	if len(j.Checkpoints) == 0 {
		fmt.Fprintln(w, "  checkpoints none committed")
	} else {
		var steps []string
		for _, c := range j.Checkpoints {
			steps = append(steps, fmt.Sprint(c.Step))
		}
		last := j.Checkpoints[len(j.Checkpoints)-1]
		ago := now.Sub(time.UnixMilli(last.CommittedUnixMs)).Round(time.Second)
		fmt.Fprintf(w, "  checkpoints %s (last %s ago)\n", strings.Join(steps, ", "), ago)
	}
	for _, c := range j.CorruptCheckpoints {
		fmt.Fprintf(w, "  corrupt     step %d, set aside (objects kept): %s\n", c.Step, c.Corrupt)
	}
	if n := len(j.History); n > 0 {
		fmt.Fprintln(w, "  generations (most recent last):")
		for _, g := range j.History[max(0, n-5):] {
			var ranks []string
			for _, p := range g.Peers {
				ranks = append(ranks, p.WorkerId)
			}
			world := strings.Join(ranks, " ")
			if world == "" {
				world = "waiting for workers"
			}
			line := fmt.Sprintf("    %d: stage %d from step %d on [%s]", g.Generation, g.Stage+1, g.RestoreStep, world)
			if g.Reason != "" {
				line += " — " + g.Reason
			}
			fmt.Fprintln(w, line)
		}
	}
	if j.UpdatedUnixMs > 0 {
		fmt.Fprintf(w, "  updated   %s ago\n", now.Sub(time.UnixMilli(j.UpdatedUnixMs)).Round(time.Second))
	}
}

// watchEnd is the result of `loom status JOB --watch` once the job's
// stream has ended: nil when it succeeded, exit status 1 naming the state
// when it failed or was cancelled.
func watchEnd(j *loompb.Job) error {
	if j == nil || j.State == "succeeded" {
		return nil
	}
	if j.State != "failed" && j.State != "cancelled" {
		return nil
	}
	msg := j.Message
	if msg == "" {
		msg = "no reason given"
	}
	return &exitError{code: 1, err: fmt.Errorf("job %s %s: %s", j.Name, j.State, msg)}
}
