package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/loomtrain/loom/internal/buildinfo"
	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/kbench"
	"github.com/spf13/cobra"
)

// Every `loom bench` run starts by saying which machine it ran on and how
// loaded it was, so that no figure is read as another machine's, on
// stderr.
func init() {
	benchCmd.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if err := rootCmd.PersistentPreRunE(cmd, args); err != nil {
			return err
		}
		// On stderr: stdout stays the result alone (a table, JSON, or
		// the protocol of a bench's child pass, as in loom bench load).
		writeMachineLine(cmd.ErrOrStderr(), time.Now())
		return nil
	}
}

// writeMachineLine prints "# machine: CPU, N CPUs, gemm kernel K; load
// average A B C; loom VERSION REVISION, GO; DATE".
func writeMachineLine(w io.Writer, now time.Time) {
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	bi := buildinfo.Read()
	rev := bi.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if bi.Modified {
		rev += "+modified"
	}
	fmt.Fprintf(w, "# machine: %s, gemm kernel %s; load average %s; loom %s %s, %s; %s\n",
		kbench.CPUModel(), kernels.GemmKernel(), load, bi.Version, rev, bi.GoVersion, now.UTC().Format("2006-01-02 15:04 MST"))
}
