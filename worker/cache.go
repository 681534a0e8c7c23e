package worker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/loomtrain/loom/shard"
)

// DiskCache is a shard.ObjectStore that keeps whole copies of immutable
// objects (Arrow shards: keys ending in ".arrow") on local disk, so that a
// restarted generation, or a second epoch, reads them from the worker's
// disk instead of the object store (--cache-dir). Every other key, and
// every write, goes straight to the underlying store. A cached copy is
// written to a temporary file and renamed into place, so a crash never
// leaves a partial object behind; the index's checksums are still
// verified by the reader on every range it reads.
type DiskCache struct {
	store shard.ObjectStore
	dir   string
	mu    sync.Mutex // serialises fills of one key
	fills map[string]*sync.Mutex
}

// NewDiskCache caches store's shard objects under dir (created if missing).
func NewDiskCache(store shard.ObjectStore, dir string) (*DiskCache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("shard cache dir %s: %w", dir, err)
	}
	return &DiskCache{store: store, dir: dir, fills: map[string]*sync.Mutex{}}, nil
}

func cacheable(key string) bool { return strings.HasSuffix(key, ".arrow") }

func (c *DiskCache) path(key string) string { return filepath.Join(c.dir, filepath.FromSlash(key)) }

// Put implements shard.ObjectStore: it writes through and drops any cached
// copy.
func (c *DiskCache) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if cacheable(key) {
		os.Remove(c.path(key))
	}
	return c.store.Put(ctx, key, r, size)
}

// GetRange implements shard.ObjectStore.
func (c *DiskCache) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if !cacheable(key) || shard.ValidKey(key) != nil {
		return c.store.GetRange(ctx, key, offset, length)
	}
	f, err := c.open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("shard cache %s: %w", key, err)
	}
	size := st.Size()
	if length < 0 {
		length = size - offset
	}
	if offset < 0 || offset > size || offset+length > size || (offset == size && length > 0) {
		return nil, fmt.Errorf("object %q: range [%d, %d) outside its %d bytes", key, offset, offset+length, size)
	}
	buf := make([]byte, length)
	if _, err := f.ReadAt(buf, offset); err != nil && !(err == io.EOF && length == 0) {
		return nil, fmt.Errorf("shard cache %s: %w", key, err)
	}
	return buf, nil
}

// open returns the cached copy of key, fetching it first if needed.
func (c *DiskCache) open(ctx context.Context, key string) (*os.File, error) {
	p := c.path(key)
	if f, err := os.Open(p); err == nil {
		return f, nil
	}
	c.mu.Lock()
	m := c.fills[key]
	if m == nil {
		m = &sync.Mutex{}
		c.fills[key] = m
	}
	c.mu.Unlock()
	m.Lock()
	defer m.Unlock()
	if f, err := os.Open(p); err == nil {
		return f, nil // filled while we waited
	}
	b, err := c.store.GetRange(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("shard cache %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".fill-*")
	if err != nil {
		return nil, fmt.Errorf("shard cache %s: %w", key, err)
	}
	_, werr := io.Copy(tmp, bytes.NewReader(b))
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("shard cache %s: writing: %v %v", key, werr, cerr)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("shard cache %s: %w", key, err)
	}
	return os.Open(p)
}

// Stat implements shard.ObjectStore.
func (c *DiskCache) Stat(ctx context.Context, key string) (shard.ObjectInfo, error) {
	return c.store.Stat(ctx, key)
}

// List implements shard.ObjectStore.
func (c *DiskCache) List(ctx context.Context, prefix string, fn func(shard.ObjectInfo) error) error {
	return c.store.List(ctx, prefix, fn)
}

// Delete implements shard.ObjectStore.
func (c *DiskCache) Delete(ctx context.Context, key string) error {
	if cacheable(key) {
		os.Remove(c.path(key))
	}
	return c.store.Delete(ctx, key)
}
