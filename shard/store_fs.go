package shard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// FSStore is an ObjectStore on a local directory. Objects are files under
// Root; Put writes a temporary file in the same directory, syncs it and
// renames it over the target, so readers never see a partial object.
type FSStore struct {
	Root string
}

// NewFSStore returns a store rooted at dir, creating the directory.
func NewFSStore(dir string) (*FSStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("object store root %s: %w", dir, err)
	}
	return &FSStore{Root: dir}, nil
}

const fsTempPrefix = ".loom-tmp-"

func (s *FSStore) path(key string) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.Root, filepath.FromSlash(key)), nil
}

// Put implements ObjectStore.
func (s *FSStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), fsTempPrefix+"*")
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := readExactly(key, ctxReader{ctx, r}, f, size); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	ok = true
	return nil
}

// GetRange implements ObjectStore.
func (s *FSStore) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("get %q: %w", key, ErrNotFound)
		}
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("get %q: %w", key, ErrNotFound)
	}
	n, err := checkRange(key, st.Size(), offset, length)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, offset); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, fmt.Errorf("get %q [%d, %d): %w", key, offset, offset+n, err)
	}
	return buf, nil
}

// Stat implements ObjectStore.
func (s *FSStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if err != nil || st.IsDir() {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return ObjectInfo{}, fmt.Errorf("stat %q: %w", key, ErrNotFound)
		}
		return ObjectInfo{}, fmt.Errorf("stat %q: %w", key, err)
	}
	return ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// List implements ObjectStore.
func (s *FSStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	var infos []ObjectInfo
	err := filepath.WalkDir(s.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), fsTempPrefix) {
			return nil
		}
		rel, err := filepath.Rel(s.Root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		infos = append(infos, ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime()})
		return ctx.Err()
	})
	if err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, in := range infos {
		if err := fn(in); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements ObjectStore.
func (s *FSStore) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	return nil
}

// ctxReader stops a copy when the context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
