package consensustest

import (
	"github.com/loomtrain/loom/internal/logtest"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/loomtrain/loom/coordinator/consensus/localraft"
)

// StartCluster is NewCluster in t.TempDir(), closed when the test ends,
// with raft's warnings and errors sent to t.Log.
func StartCluster(t testing.TB, n int, newFSM func() raft.FSM) *localraft.Cluster {
	t.Helper()
	w := logtest.New(t)
	lg := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := localraft.NewCluster(t.TempDir(), n, newFSM, lg)
	if err != nil {
		t.Fatalf("consensustest.StartCluster(%d): %v", n, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing cluster: %v", err)
		}
		w.Stop()
	})
	return c
}
