package consensus_test

import (
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/loomtrain/loom/coordinator/consensus"
	"github.com/loomtrain/loom/coordinator/consensus/localraft"
)

// Close stops every goroutine of the node, its transport and its stores.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	c, err := localraft.NewCluster(t.TempDir(), 3, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(localraft.Set("a", "b"), wait); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Converge(wait); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := consensus.Open(consensus.Config{ID: "solo", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0",
		Bootstrap: []consensus.Peer{{ID: "solo"}}, Tuning: localraft.FastTuning(), Logger: slog.New(slog.DiscardHandler)}, localraft.NewKV())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", got, before, buf[:runtime.Stack(buf, true)])
	}
}
