package consensustest

import (
	"log/slog"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// StartCluster is NewCluster in t.TempDir(), closed when the test ends,
// with raft's warnings and errors sent to t.Log.
func StartCluster(t testing.TB, n int, newFSM func() raft.FSM) *Cluster {
	t.Helper()
	w := newTWriter(t)
	lg := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := NewCluster(t.TempDir(), n, newFSM, lg)
	if err != nil {
		t.Fatalf("consensustest.StartCluster(%d): %v", n, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing cluster: %v", err)
		}
		w.stop()
	})
	return c
}

// tWriter sends log lines to t.Log until done, so that a goroutine that
// logs after the test ended does not panic the test binary.
type tWriter struct {
	t    testing.TB
	mu   *sync.Mutex
	done *bool
}

func newTWriter(t testing.TB) tWriter { return tWriter{t: t, mu: new(sync.Mutex), done: new(bool)} }

func (w tWriter) stop() {
	w.mu.Lock()
	*w.done = true
	w.mu.Unlock()
}

func (w tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if *w.done {
		return len(p), nil
	}
	w.t.Log(string(p))
	return len(p), nil
}
