package hf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Source is where the files of a model directory are read from: a local
// directory (Dir) or an object-store prefix (the trainer adapts its S3
// store). Reads are by byte range so that a checkpoint is streamed tensor
// by tensor and never held whole.
type Source interface {
	// Size returns the length of the named file; a missing file gives an
	// error that wraps fs.ErrNotExist.
	Size(ctx context.Context, name string) (int64, error)
	// ReadRange returns n bytes of the named file from offset off.
	ReadRange(ctx context.Context, name string, off, n int64) ([]byte, error)
	// String names the source in errors ("/models/llama", "s3://b/p").
	String() string
}

// Sink is where an exported model directory is written.
type Sink interface {
	// Put stores the named file whole, replacing an older one. It must
	// not keep data after it returns (Export reuses the buffer).
	Put(ctx context.Context, name string, data []byte) error
	String() string
}

// Dir is a Source and Sink on a local directory.
type Dir string

// Size implements Source.
func (d Dir) Size(_ context.Context, name string) (int64, error) {
	st, err := os.Stat(filepath.Join(string(d), name))
	if err != nil {
		return 0, err
	}
	if st.IsDir() {
		return 0, fmt.Errorf("%s: is a directory", filepath.Join(string(d), name))
	}
	return st.Size(), nil
}

// ReadRange implements Source.
func (d Dir) ReadRange(_ context.Context, name string, off, n int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(string(d), name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %d bytes at %d run past the end of the file", f.Name(), n, off)
		}
		return nil, err
	}
	return buf, nil
}

// Put implements Sink: it writes a temporary file and renames it, so a
// reader never sees half a file.
func (d Dir) Put(_ context.Context, name string, data []byte) error {
	p := filepath.Join(string(d), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func (d Dir) String() string { return string(d) }

// readFile reads a whole (small) file: config.json, an index, a tokenizer.
func readFile(ctx context.Context, src Source, name string) ([]byte, error) {
	n, err := src.Size(ctx, name)
	if err != nil {
		return nil, err
	}
	if n > maxSmallFile {
		return nil, fmt.Errorf("%s/%s: %d bytes is more than the %d a metadata file may hold", src, name, n, maxSmallFile)
	}
	return src.ReadRange(ctx, name, 0, n)
}

// maxSmallFile bounds config.json, index and tokenizer files (a large
// tokenizer.json is about 10 MB).
const maxSmallFile = 256 << 20

// exists reports whether the named file exists in src.
func exists(ctx context.Context, src Source, name string) (bool, error) {
	_, err := src.Size(ctx, name)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}
