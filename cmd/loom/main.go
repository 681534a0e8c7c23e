// Command loom is the single binary of Loom: the coordinator, the worker,
// the client commands and the benchmarks. main stays thin; each subcommand
// lives in its own file and wires library packages together.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loom:", err)
		os.Exit(exitCode(err))
	}
}
