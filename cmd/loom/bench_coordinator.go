package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/coordinator/coordbench"
)

func init() { benchCmd.AddCommand(newBenchCoordinatorCmd()) }

func newBenchCoordinatorCmd() *cobra.Command {
	var (
		cfg    coordbench.Config
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "coordinator",
		Short: "Coordinator at scale: Raft apply throughput, API latency, failover time, memory",
		Long: `Starts a Raft cluster of coordinator nodes in this process (real hashicorp/raft
over loopback TCP, raft-boltdb in a temporary directory), then:

  1. registers --workers simulated workers (one worker-up command each, through
     Raft on the leader, --concurrency at a time) and applies the same commands
     to the bare state machine as the baseline;
  2. submits --jobs jobs over gRPC (round-robin over the nodes) and waits until
     the scheduler has placed every worker;
  3. has every worker report --rounds steps over gRPC (batched per node), and
     waits until every job shows the last step;
  4. reads jobs from every node, measures the heap and the snapshot size;
  5. kills the leader and times the election of a new one.

Example:
  loom bench coordinator
  loom bench coordinator --workers 1000 --jobs 10 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := coordbench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "%d nodes, %d workers, %d jobs, %d progress rounds, fsync=%v\n", r.Nodes, r.Workers, r.Jobs, r.Rounds, !r.NoSync)
			fmt.Fprintln(tw, "metric\tloom\tbaseline\tratio")
			fmt.Fprintf(tw, "apply throughput (cmd/s)\t%.0f (Raft, 3 nodes)\t%.0f (FSM alone)\t%.3f\n", r.RaftApplyPerSec, r.FSMApplyPerSec, r.RaftApplyPerSec/r.FSMApplyPerSec)
			fmt.Fprintf(tw, "SubmitJob p50 / p99 (ms)\t%.2f / %.2f\t\t\n", r.SubmitP50, r.SubmitP99)
			fmt.Fprintf(tw, "ReportProgress p50 / p99 (ms)\t%.2f / %.2f\t\t\n", r.ReportP50, r.ReportP99)
			fmt.Fprintf(tw, "GetJob p50 / p99 (ms)\t%.2f / %.2f\t\t\n", r.GetJobP50, r.GetJobP99)
			fmt.Fprintf(tw, "progress reports applied (/s)\t%.0f\t\t\n", r.ReportsPerSec)
			fmt.Fprintf(tw, "all jobs scheduled (s)\t%.2f\t\t\n", r.ScheduleSeconds)
			fmt.Fprintf(tw, "leader failover (s)\t%.2f (%d jobs kept)\t\t\n", r.FailoverSeconds, r.JobsAfter)
			fmt.Fprintf(tw, "heap, whole process (MiB)\t%.1f\t\t\n", r.HeapMiB)
			fmt.Fprintf(tw, "state snapshot (MiB, encode s)\t%.2f (%.3f s)\t\t\n", r.StateMiB, r.SnapshotSec)
			return tw.Flush()
		},
	}
	fl := c.Flags()
	fl.IntVar(&cfg.Nodes, "nodes", 3, "coordinator nodes")
	fl.IntVar(&cfg.Workers, "workers", 10000, "simulated workers")
	fl.IntVar(&cfg.Jobs, "jobs", 100, "jobs (workers must be a multiple)")
	fl.IntVar(&cfg.Rounds, "rounds", 3, "progress reports per worker")
	fl.IntVar(&cfg.Concurrency, "concurrency", 64, "concurrent client calls")
	fl.BoolVar(&cfg.NoSync, "no-sync", false, "skip fsync of the Raft log")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
