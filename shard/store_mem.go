package shard

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// MemStore is an in-memory ObjectStore: the hand-written fake used by tests
// of code that takes an ObjectStore. It passes the same conformance suite
// as the real stores. It counts the calls it serves, so tests can check
// how many range GETs a reader made.
type MemStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	mtime   map[string]time.Time
	now     func() time.Time

	// Gets counts GetRange calls (guarded by mu; read with Calls).
	gets int
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{objects: map[string][]byte{}, mtime: map[string]time.Time{}, now: time.Now}
}

// Gets returns the number of GetRange calls served so far.
func (m *MemStore) Gets() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gets
}

// Corrupt overwrites byte off of key with b (for tests of checksum paths).
func (m *MemStore) Corrupt(key string, off int64, b byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data := append([]byte(nil), m.objects[key]...)
	data[off] = b
	m.objects[key] = data
}

// Truncate cuts key to n bytes (for tests of truncated shards).
func (m *MemStore) Truncate(key string, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = append([]byte(nil), m.objects[key][:n]...)
}

// Put implements ObjectStore.
func (m *MemStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := readExactly(key, ctxReader{ctx, r}, &buf, size); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = buf.Bytes()
	m.mtime[key] = m.now()
	return nil
}

// GetRange implements ObjectStore.
func (m *MemStore) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	data, ok := m.objects[key]
	if !ok {
		return nil, fmt.Errorf("get %q: %w", key, ErrNotFound)
	}
	n, err := checkRange(key, int64(len(data)), offset, length)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), data[offset:offset+n]...), nil
}

// Stat implements ObjectStore.
func (m *MemStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ValidKey(key); err != nil {
		return ObjectInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.objects[key]
	if !ok {
		return ObjectInfo{}, fmt.Errorf("stat %q: %w", key, ErrNotFound)
	}
	return ObjectInfo{Key: key, Size: int64(len(data)), ModTime: m.mtime[key]}, nil
}

// List implements ObjectStore.
func (m *MemStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	m.mu.Lock()
	var infos []ObjectInfo
	for k, v := range m.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, ObjectInfo{Key: k, Size: int64(len(v)), ModTime: m.mtime[k]})
		}
	}
	m.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, in := range infos {
		if err := fn(in); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements ObjectStore.
func (m *MemStore) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, key)
	delete(m.mtime, key)
	return nil
}
