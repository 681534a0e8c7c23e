package coordinator

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// FSM adapts State to raft.FSM and lets readers see the state and wait for
// changes. Apply, Snapshot and Restore are called by Raft; Read and Changed
// by the API server and the leader loop, concurrently.
type FSM struct {
	mu      sync.RWMutex
	s       *State
	changed chan struct{} // closed and replaced after every change
}

// NewFSM returns an FSM holding an empty state.
func NewFSM() *FSM { return &FSM{s: NewState(), changed: make(chan struct{})} }

var _ raft.FSM = (*FSM)(nil)

// Apply decodes and applies a committed log entry. Its return value (a
// Result) becomes the ApplyFuture's response on the node that proposed it.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := DecodeCommand(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	var r Result
	if err != nil {
		// Still counts as applied, identically on every replica.
		f.s.Index++
		r = fail(InvalidArgument, "log entry %d: %v", l.Index, err)
	} else {
		r = f.s.Apply(c)
	}
	r.Index = f.s.Index
	f.notifyLocked()
	return r
}

func (f *FSM) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Read calls fn with the state under a read lock. fn must not keep
// references into the state after it returns, nor modify it.
func (f *FSM) Read(fn func(*State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.s)
}

// WaitIndex waits until the state has applied index commands or ctx ends.
func (f *FSM) WaitIndex(ctx context.Context, index uint64) error {
	for {
		f.mu.RLock()
		cur, ch := f.s.Index, f.changed
		f.mu.RUnlock()
		if cur >= index {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Changed returns a channel closed at the next change of the state.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// Snapshot encodes the state. It runs while Apply is held off, so it only
// serialises to memory; Persist writes the bytes out.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := f.s.Marshal()
	if err != nil {
		return nil, fmt.Errorf("snapshot coordinator state: %w", err)
	}
	return &fsmSnapshot{b: b}, nil
}

// Restore replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("restore coordinator state: %w", err)
	}
	s, err := UnmarshalState(b)
	if err != nil {
		return fmt.Errorf("restore coordinator state: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s = s
	f.notifyLocked()
	return nil
}

type fsmSnapshot struct{ b []byte }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.b); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist coordinator snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
