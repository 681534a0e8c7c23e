package shard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrNotFound is returned (wrapped, with the key) by ObjectStore methods when
// the object does not exist. Test for it with errors.Is.
var ErrNotFound = errors.New("object not found")

// CorruptError says that stored bytes are not what they should be: a
// checksum that does not match the index or the checkpoint manifest, or
// bytes that passed their checksum and still do not decode. It is not
// transient (reading again gives the same bytes), so whoever meets it
// fails at once instead of retrying: a job fails naming Object, and a
// corrupt checkpoint is set aside (docs/coordinator.md, "Failure policy").
// Find it with errors.As.
type CorruptError struct {
	Object string // the object at fault
	Err    error  // what is wrong with it; its message names the object
}

func (e *CorruptError) Error() string { return e.Err.Error() }
func (e *CorruptError) Unwrap() error { return e.Err }

// Corrupt wraps err, which describes corrupt bytes of object, as a
// *CorruptError (nil stays nil).
func Corrupt(object string, err error) error {
	if err == nil {
		return nil
	}
	return &CorruptError{Object: object, Err: err}
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string    // full key, relative to the store's root
	Size    int64     // bytes
	ModTime time.Time // last write, as reported by the store (may be zero)
}

// ObjectStore is the narrow view of object storage that datasets need.
// Keys are slash-separated relative paths such as "datasets/coco/index.json";
// they never start with "/" and never contain "." or ".." elements or empty
// elements. Implementations must be safe for concurrent use.
//
// Contracts every implementation passes (shard/storetest checks them):
//
//   - Put stores exactly size bytes read from r under key, replacing any
//     previous object. The write is atomic: a concurrent or later Get or Stat
//     sees either the old object or the complete new one, never a partial
//     one, and a failed Put leaves the old object (or nothing) in place. If r
//     yields fewer or more than size bytes, Put fails and stores nothing.
//   - GetRange returns length bytes starting at offset. length < 0 means "to
//     the end of the object". A range that starts at or beyond the end of the
//     object, or that extends past it, is an error (the caller always knows
//     the size from the index or Stat), except that a zero-length range at
//     offset <= size returns an empty slice. A missing key gives ErrNotFound.
//   - Stat returns the object's size; a missing key gives ErrNotFound.
//   - List calls fn for every object whose key starts with prefix, in
//     lexical key order, and stops at fn's first error, returning it. Only
//     objects are listed, not "directories". An empty result is not an error.
//   - Delete removes the object. Deleting a missing key is not an error.
//
// Errors name the key they concern.
type ObjectStore interface {
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error)
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	Delete(ctx context.Context, key string) error
}

// ValidKey reports why key is not a valid object key, or nil if it is.
func ValidKey(key string) error {
	if key == "" {
		return errors.New("empty object key")
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("object key %q: must not start with /", key)
	}
	for _, el := range strings.Split(key, "/") {
		switch el {
		case "":
			return fmt.Errorf("object key %q: empty path element", key)
		case ".", "..":
			return fmt.Errorf("object key %q: %q path element", key, el)
		}
	}
	if strings.ContainsRune(key, 0) || strings.Contains(key, "\\") {
		return fmt.Errorf("object key %q: contains NUL or backslash", key)
	}
	return nil
}

// JoinKey joins key elements with "/", ignoring empty ones.
func JoinKey(elems ...string) string {
	var parts []string
	for _, e := range elems {
		e = strings.Trim(e, "/")
		if e != "" {
			parts = append(parts, e)
		}
	}
	return strings.Join(parts, "/")
}

// checkRange validates a GetRange request against the object size and
// returns the resolved length.
func checkRange(key string, size, offset, length int64) (int64, error) {
	if offset < 0 {
		return 0, fmt.Errorf("object %q: negative range offset %d", key, offset)
	}
	if length < 0 {
		if offset > size {
			return 0, fmt.Errorf("object %q: range offset %d beyond size %d", key, offset, size)
		}
		return size - offset, nil
	}
	if offset+length > size || (length > 0 && offset >= size) {
		return 0, fmt.Errorf("object %q: range [%d, %d) beyond size %d", key, offset, offset+length, size)
	}
	return length, nil
}

// readExactly reads size bytes from r, failing if r yields fewer or more.
func readExactly(key string, r io.Reader, w io.Writer, size int64) error {
	n, err := io.Copy(w, io.LimitReader(r, size))
	if err != nil {
		return fmt.Errorf("object %q: reading body: %w", key, err)
	}
	if n != size {
		return fmt.Errorf("object %q: body has %d bytes, want %d", key, n, size)
	}
	var one [1]byte
	if m, _ := io.ReadFull(r, one[:]); m > 0 {
		return fmt.Errorf("object %q: body longer than the declared %d bytes", key, size)
	}
	return nil
}
