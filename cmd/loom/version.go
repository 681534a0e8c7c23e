package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/loomtrain/loom/internal/buildinfo"
	"github.com/loomtrain/loom/kernels"
	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the module version, VCS revision, Go version, platform, CPU features and compute devices",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			in := buildinfo.Read()
			// The host first (the reference), then every device each
			// linked-in backend finds, or why it finds none.
			devices := append([]string{"host: the CPU (reference)"}, kernels.ListDevices()...)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					buildinfo.Info
					Devices []string `json:"devices"`
				}{in, devices})
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%sdevices:  %s\n", in.String(), strings.Join(devices, "\n          "))
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return c
}

func init() { rootCmd.AddCommand(newVersionCmd()) }
