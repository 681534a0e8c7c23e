package etcdserver

import (
	"log/slog"
	"testing"
)

// StartForTest starts a throwaway etcd (data in t.TempDir(), fsync off, logs
// at warn and above through t.Log) and closes it when the test ends. Close
// clients with t.Cleanup registered after this call, so they close first.
func StartForTest(t testing.TB) *Server {
	t.Helper()
	s, err := StartWithOptions(t.TempDir(), Options{
		NoFsync: true,
		Logger:  slog.New(slog.NewTextHandler(tWriter{t}, nil)),
	})
	if err != nil {
		t.Fatalf("etcdserver.StartForTest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("etcdserver: close: %v", err)
		}
	})
	return s
}

// tWriter sends log lines to t.Log so they appear only for failing or -v tests.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
