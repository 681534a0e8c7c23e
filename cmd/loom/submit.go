package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/coordinator"
)

func init() { rootCmd.AddCommand(newSubmitCmd()) }

func newSubmitCmd() *cobra.Command {
	var (
		cf     clientFlags
		dryRun bool
	)
	c := &cobra.Command{
		Use:   "submit MANIFEST.yaml",
		Short: "Submit a training job from a manifest (or check it with --dry-run)",
		Long: `Reads a job manifest (YAML; see docs/manifest.md), checks it strictly — an unknown
field, a value of the wrong type or an invalid value is an error naming the line
and field — and submits it to the coordinator. The job waits until enough
workers are free, then runs its stages in order.

--dry-run only checks the manifest and prints its normalised form, with every
default written out; it does not contact the coordinator.

The bearer token is read from LOOM_TOKEN.

Example:
  loom submit --dry-run blip2.yaml
  LOOM_TOKEN=secret loom submit --coordinator coord-0.coord:7001 blip2.yaml
  loom status blip2-small --watch`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			m, err := api.ParseManifest(args[0], data)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if dryRun {
				b, err := m.Normalized()
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			cc, err := cf.dial()
			if err != nil {
				return err
			}
			defer cc.Close()
			ctx, cancel := cf.ctx(cmd.Context())
			defer cancel()
			j, err := jobsClient(cc).SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: data, File: args[0], RequestId: coordinator.NewID()})
			if err != nil {
				return rpcError(cf.addr, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "submitted job %s: %s %s, %d stages, %d steps (%s)\nwatch it with: loom status %s --watch\n",
				j.Name, m.Recipe, m.Model.Size, j.Stages, j.TotalSteps, j.State, j.Name)
			return nil
		},
	}
	cf.register(c)
	c.Flags().BoolVar(&dryRun, "dry-run", false, "check the manifest and print its normalised form; submit nothing")
	return c
}
