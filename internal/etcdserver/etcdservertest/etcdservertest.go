package etcdservertest

import (
	"log/slog"
	"testing"

	"github.com/loomtrain/loom/internal/etcdserver"
	"github.com/loomtrain/loom/internal/logtest"
)

// Start starts a throwaway etcd (data in t.TempDir(), fsync off, logs
// at warn and above through t.Log) and closes it when the test ends. Close
// clients with t.Cleanup registered after this call, so they close first.
func Start(t testing.TB) *etcdserver.Server {
	t.Helper()
	w := logtest.New(t)
	s, err := etcdserver.StartWithOptions(t.TempDir(), etcdserver.Options{
		NoFsync: true,
		Logger:  slog.New(slog.NewTextHandler(w, nil)),
	})
	if err != nil {
		t.Fatalf("etcdservertest.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("etcdserver: close: %v", err)
		}
		w.Stop()
	})
	return s
}
