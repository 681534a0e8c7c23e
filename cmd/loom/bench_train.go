package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/trainer"
)

func init() { benchCmd.AddCommand(newBenchTrainCmd()) }

func newBenchTrainCmd() *cobra.Command {
	var (
		o      trainer.BenchOptions
		worlds string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Training throughput per worker at 1, 2, 4 in-process workers, communication share, checkpoint blocking time",
		Long: `Trains the first stage of a recipe on synthetic data with every worker a
goroutine of this process (ranks connected by the in-process collective
transport) and reports, per world size: tokens/s per worker (weak scaling:
--per-rank samples per rank per step) as a ratio of the 1-worker figure, the
median step time and the share of step time spent waiting on collectives
(gradient all-reduce and the token count). It then times how long a
checkpoint blocks training when written synchronously (snapshot, write to a
local directory, commit) and asynchronously (snapshot only; the upload runs
in the background), as a ratio of the synchronous time. With --shard, every
world size above 1 runs again with that parallelism.shard (ZeRO stage 1 or
2, docs/parallelism.md), and its step time and rank 0's optimizer state are
reported as ratios of plain data parallelism's.

The workers share this machine's cores, so per-worker throughput falls as
workers are added even with free communication: read the ratios, not the
absolute numbers.

Example:
  loom bench train
  loom bench train --recipe vila --size tiny --workers 1,2 --steps 3 --json
  loom bench train --workers 1,2,4 --shard gradients`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range strings.Split(worlds, ",") {
				w, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil || w < 1 {
					return fmt.Errorf("--workers: %q is not a positive integer", f)
				}
				o.Worlds = append(o.Worlds, w)
			}
			res, err := trainer.Bench(cmd.Context(), o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			trainer.WriteBenchTable(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Recipe, "recipe", "lwm", "recipe whose first stage is trained: "+strings.Join(api.Recipes, ", "))
	f.StringVar(&o.Size, "size", "small", "model size (tiny, small)")
	f.StringVar(&worlds, "workers", "1,2,4", "comma-separated world sizes")
	f.IntVar(&o.PerRank, "per-rank", 4, "samples per worker per step")
	f.IntVar(&o.Steps, "steps", 5, "timed steps per world size (after one warm-up step)")
	f.StringVar(&o.Shard, "shard", "", "also measure each world size above 1 with this parallelism.shard ("+strings.Join(api.ShardLevels[1:], " or ")+") beside plain data parallelism")
	f.StringVar(&o.Dir, "dir", "", "directory for the checkpoint timing (default: a temporary one)")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}
