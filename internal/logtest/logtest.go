package logtest

import (
	"sync"
	"testing"
)

// Writer sends each Write to t.Log until Stop is called.
type Writer struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

// New returns a Writer for t.
func New(t testing.TB) *Writer { return &Writer{t: t} }

// Stop makes later writes no-ops; call it in t.Cleanup after the server stopped.
func (w *Writer) Stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(p))
	}
	return len(p), nil
}
