package etcdserver

import (
	"log/slog"
	"sync"
	"testing"
)

// StartForTest starts a throwaway etcd (data in t.TempDir(), fsync off, logs
// at warn and above through t.Log) and closes it when the test ends. Close
// clients with t.Cleanup registered after this call, so they close first.
func StartForTest(t testing.TB) *Server {
	t.Helper()
	w := newTWriter(t)
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
		w.stop()
	})
	return s
}

// tWriter sends log lines to t.Log so they appear only for failing or -v tests.
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
