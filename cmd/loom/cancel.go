package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/coordinator"
)

func init() { rootCmd.AddCommand(newCancelCmd(), newResumeCmd()) }

func newCancelCmd() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "cancel JOB",
		Short: "Cancel a job; its workers are released and its checkpoints kept",
		Long: `Stops a pending or running job. Its workers go back to the free pool; its
committed checkpoints stay, so the job can be continued later with loom resume.

Example:
  loom cancel blip2-small
  loom resume blip2-small`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc, err := cf.dial()
			if err != nil {
				return err
			}
			defer cc.Close()
			ctx, cancel := cf.ctx(cmd.Context())
			defer cancel()
			j, err := jobsClient(cc).CancelJob(ctx, &loompb.CancelJobRequest{Job: args[0], RequestId: coordinator.NewID()})
			if err != nil {
				return rpcError(cf.addr, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s %s at step %d/%d\n", j.Name, j.State, j.Step, j.TotalSteps)
			return nil
		},
	}
	cf.register(c)
	return c
}

func newResumeCmd() *cobra.Command {
	var (
		cf   clientFlags
		from int64
	)
	c := &cobra.Command{
		Use:   "resume JOB",
		Short: "Restart a failed or cancelled job from its last committed checkpoint (or --from-step N)",
		Long: `Makes the job pending again; it restarts from its last committed checkpoint as
soon as enough workers are free. --from-step picks an earlier committed checkpoint
instead (see loom status JOB for the list); the checkpoints after it are retired.
A running job given --from-step is rewound.

Example:
  loom resume blip2-small
  loom resume blip2-small --from-step 2000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from < 0 {
				return fmt.Errorf("--from-step %d is negative", from)
			}
			cc, err := cf.dial()
			if err != nil {
				return err
			}
			defer cc.Close()
			ctx, cancel := cf.ctx(cmd.Context())
			defer cancel()
			j, err := jobsClient(cc).ResumeJob(ctx, &loompb.ResumeJobRequest{Job: args[0], FromStep: from, RequestId: coordinator.NewID()})
			if err != nil {
				return rpcError(cf.addr, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s %s, resuming from step %d/%d\n", j.Name, j.State, j.Step, j.TotalSteps)
			return nil
		},
	}
	cf.register(c)
	c.Flags().Int64Var(&from, "from-step", 0, "resume from the committed checkpoint at this step (0: the last one)")
	return c
}
