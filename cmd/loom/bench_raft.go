package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/coordinator/consensus/consensusbench"
)

func init() { benchCmd.AddCommand(newBenchRaftCmd()) }

func newBenchRaftCmd() *cobra.Command {
	var (
		cfg    consensusbench.ApplyBench
		asJSON bool
		dir    string
	)
	c := &cobra.Command{
		Use:   "raft",
		Short: "Raft apply throughput of the consensus layer against the state machine alone",
		Long: `Starts --nodes Raft voters in this process (hashicorp/raft over loopback TCP,
raft-boltdb/v2 in a temporary directory, each advertising a "localhost:PORT"
name) with a small key-value state machine, applies --ops commands through the
leader from --concurrency goroutines, then applies the same commands to a bare
state machine as the baseline. It prints throughput, the ratio Raft / FSM, and
per-apply latency. Runs once with the log fsynced and once without unless
--fsync or --no-fsync picks one.

Example:
  loom bench raft
  loom bench raft --ops 50000 --concurrency 128 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			syncModes := []bool{true, false}
			fs, _ := cmd.Flags().GetBool("fsync")
			nfs, _ := cmd.Flags().GetBool("no-fsync")
			switch {
			case fs && nfs:
				return fmt.Errorf("--fsync and --no-fsync exclude each other")
			case fs:
				syncModes = []bool{true}
			case nfs:
				syncModes = []bool{false}
			}
			var results []consensusbench.ApplyBenchResult
			for _, s := range syncModes {
				run := cfg
				run.Sync = s
				r, err := consensusbench.RunApplyBench(dir, run)
				if err != nil {
					return err
				}
				results = append(results, r)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(results)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "nodes\tfsync\tops\tconc\traft apply/s\tFSM apply/s\tratio\traft p50 / p99 ms\tFSM p50 / p99 µs")
			for _, r := range results {
				fmt.Fprintf(tw, "%d\t%v\t%d\t%d\t%.0f\t%.0f\t%.4f\t%.2f / %.2f\t%.2f / %.2f\n",
					r.Nodes, r.Sync, r.Ops, r.Concurrency, r.RaftPerSec, r.FSMPerSec, r.Ratio, r.RaftP50Ms, r.RaftP99Ms, r.FSMP50Us, r.FSMP99Us)
			}
			return tw.Flush()
		},
	}
	f := c.Flags()
	f.IntVar(&cfg.Nodes, "nodes", 3, "Raft voters (1, 3 or 5)")
	f.IntVar(&cfg.Ops, "ops", 20000, "commands to apply per run")
	f.IntVar(&cfg.Concurrency, "concurrency", 64, "goroutines applying at once")
	f.IntVar(&cfg.ValueBytes, "value-bytes", 128, "bytes in each command's value")
	f.Bool("fsync", false, "only the run with the Raft log fsynced")
	f.Bool("no-fsync", false, "only the run without fsync")
	f.StringVar(&dir, "dir", "", "where to put the temporary data dirs (default: the system temp dir)")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return c
}
