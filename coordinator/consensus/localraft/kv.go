package localraft

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"sync"

	"github.com/hashicorp/raft"
)

// KVCommand is the JSON command KV applies: set Key to Value, or delete Key
// when Delete is true.
type KVCommand struct {
	Key    string `json:"k"`
	Value  string `json:"v,omitempty"`
	Delete bool   `json:"d,omitempty"`
}

// Set encodes a set command.
func Set(key, value string) []byte {
	b, _ := json.Marshal(KVCommand{Key: key, Value: value})
	return b
}

// Delete encodes a delete command.
func Delete(key string) []byte {
	b, _ := json.Marshal(KVCommand{Key: key, Delete: true})
	return b
}

// KV is a raft.FSM over a map of strings. Apply returns the key's previous
// value (a string), or an error for a command it cannot decode. Its
// accessors are safe to call while Raft applies entries.
type KV struct {
	mu      sync.Mutex
	m       map[string]string
	applied uint64 // index of the last log applied
}

// NewKV returns an empty KV.
func NewKV() *KV { return &KV{m: map[string]string{}} }

var _ raft.FSM = (*KV)(nil)

// Apply implements raft.FSM.
func (f *KV) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = l.Index
	if l.Type != raft.LogCommand {
		return nil
	}
	var c KVCommand
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return fmt.Errorf("kv: log %d: %w", l.Index, err)
	}
	prev := f.m[c.Key]
	if c.Delete {
		delete(f.m, c.Key)
	} else {
		f.m[c.Key] = c.Value
	}
	return prev
}

// Snapshot implements raft.FSM: it copies the map, and Persist writes the
// copy as JSON while Apply goes on.
func (f *KV) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &kvSnapshot{Index: f.applied, M: maps.Clone(f.m)}, nil
}

// Restore implements raft.FSM, replacing the whole map.
func (f *KV) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s kvSnapshot
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return fmt.Errorf("kv: restore: %w", err)
	}
	if s.M == nil {
		s.M = map[string]string{}
	}
	f.mu.Lock()
	f.m, f.applied = s.M, s.Index
	f.mu.Unlock()
	return nil
}

// Get returns the value of key.
func (f *KV) Get(key string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.m[key]
	return v, ok
}

// Map returns a copy of the whole map.
func (f *KV) Map() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.m)
}

// Len is the number of keys.
func (f *KV) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// AppliedIndex is the index of the last log the FSM has applied (or of the
// snapshot it was restored from). Unlike Node.AppliedIndex, which counts
// entries handed to the FSM goroutine, it says what the map holds.
func (f *KV) AppliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

type kvSnapshot struct {
	Index uint64            `json:"index"`
	M     map[string]string `json:"m"`
}

func (s *kvSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("kv: snapshot %s: %w", sink.ID(), err)
	}
	return sink.Close()
}

func (*kvSnapshot) Release() {}
