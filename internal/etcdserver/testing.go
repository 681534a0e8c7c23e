package etcdserver

import (
	"github.com/loomtrain/loom/internal/testlog"
	"log/slog"
	"testing"
)

// StartForTest starts a throwaway etcd (data in t.TempDir(), fsync off, logs
// at warn and above through t.Log) and closes it when the test ends. Close
// clients with t.Cleanup registered after this call, so they close first.
func StartForTest(t testing.TB) *Server {
	t.Helper()
	w := testlog.New(t)
	s, err := StartWithOptions(t.TempDir(), Options{
		NoFsync: true,
		Logger:  slog.New(slog.NewTextHandler(w, nil)),
	})
	if err != nil {
		t.Fatalf("etcdserver.StartForTest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("etcdserver: close: %v", err)
		}
		w.Stop()
	})
	return s
}
