package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// rootCmd is the top of the command tree. Subcommands register themselves
// from their own files with init() { rootCmd.AddCommand(...) }, so that each
// package's commands live next to each other and main.go stays small.
var rootCmd = &cobra.Command{
	Use:   "loom",
	Short: "Loom trains vision-language models across a cluster",
	Long: `Loom is a distributed pretraining orchestrator for vision-language models.

A Raft-replicated coordinator assigns Arrow data shards held in S3-compatible
storage to GPU workers found through etcd; the workers train staged recipes
(BLIP-2, Qwen-VL, VILA, LWM) and exchange tensors over gRPC.

Start with:
  loom version          what this binary is and which CPU features it uses
  loom help COMMAND     the flags and examples of any command`,
	SilenceUsage:  true,
	SilenceErrors: true,
	PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
		l, err := newLogger(cmd.ErrOrStderr(), logFormat, logLevel)
		if err != nil {
			return err
		}
		slog.SetDefault(l)
		return nil
	},
}

// benchCmd groups the benchmarks behind docs/BENCHMARKS.md. Each package
// adds its own subcommand with init() { benchCmd.AddCommand(...) }.
var benchCmd = &cobra.Command{
	Use:   "bench",
	Short: "Run the benchmarks behind docs/BENCHMARKS.md (each prints a table, or JSON with --json)",
}

var (
	logFormat string
	logLevel  string
)

func init() {
	pf := rootCmd.PersistentFlags()
	pf.StringVar(&logFormat, "log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	pf.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	rootCmd.AddCommand(benchCmd)
}

// newLogger builds the process logger. "auto" picks text when w is a
// terminal and JSON otherwise, so that logs collected by Kubernetes parse.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "auto":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want auto, text or json", format)
}

// exitError carries a process exit status through cobra's error return,
// for commands such as `loom data verify` that must exit non-zero on a fault
// that is not a usage error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}
