package hf

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/loomtrain/loom/models/safetensors"
)

// FlaxParams flattens a Flax parameter pytree read by Unpickle (nested
// dicts whose leaves are arrays) into arrays named by their key paths
// joined with "/": "encoder/Conv_0/kernel". A tree whose only key is
// "params" (the variables dict rather than its params collection) is
// unwrapped. Any leaf that is not an array is an error naming its path.
func FlaxParams(tree any) (map[string]*NDArray, error) {
	d, ok := tree.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("flax params: the pickle holds a %T, not a dict", tree)
	}
	if p, ok := d["params"].(map[string]any); ok && len(d) == 1 {
		d = p
	}
	out := map[string]*NDArray{}
	var walk func(d map[string]any, path string) error
	walk = func(d map[string]any, path string) error {
		for k, v := range d {
			if k == "" || strings.Contains(k, "/") {
				return fmt.Errorf("flax params: key %q under %q: empty or holding '/'", k, path)
			}
			name := k
			if path != "" {
				name = path + "/" + k
			}
			switch x := v.(type) {
			case *NDArray:
				out[name] = x
			case map[string]any:
				if err := walk(x, name); err != nil {
					return err
				}
			default:
				return fmt.Errorf("flax params: %s is a %T, not an array or a dict", name, v)
			}
		}
		return nil
	}
	if err := walk(d, ""); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("flax params: no arrays")
	}
	return out, nil
}

// OpenPickle reads a pickled Flax parameter tree (Unpickle, FlaxParams)
// into a Checkpoint whose tensor names are the "/"-joined key paths, so
// that MakePlan, Load and a Mapping work on it as on a safetensors
// directory. name labels the source in errors (the file's path). The
// arrays are held in memory as one float32 safetensors buffer: about the
// size of the file again.
func OpenPickle(ctx context.Context, name string, b []byte) (*Checkpoint, error) {
	tree, err := Unpickle(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	arrs, err := FlaxParams(tree)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	names := make([]string, 0, len(arrs))
	for n := range arrs {
		names = append(names, n)
	}
	sort.Strings(names)
	ts := make([]safetensors.Tensor, 0, len(names))
	for _, n := range names {
		a := arrs[n]
		if a.DType == "<f4" && (!a.Fortran || len(a.Shape) < 2) {
			ts = append(ts, safetensors.Tensor{Name: n, DType: safetensors.F32, Shape: a.Shape, Data: a.Data})
			continue
		}
		v, err := a.Float32()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, n, err)
		}
		ts = append(ts, safetensors.F32Tensor(n, a.Shape, v))
	}
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, map[string]string{"format": "flax-pickle"}); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return Open(ctx, pickleSource{name: name, data: buf.Bytes()})
}

// pickleSource serves one in-memory safetensors buffer as SingleFile.
type pickleSource struct {
	name string
	data []byte
}

func (s pickleSource) Size(_ context.Context, name string) (int64, error) {
	if name != SingleFile {
		return 0, fmt.Errorf("%s: %s: %w", s.name, name, fs.ErrNotExist)
	}
	return int64(len(s.data)), nil
}

func (s pickleSource) ReadRange(_ context.Context, name string, off, n int64) ([]byte, error) {
	if name != SingleFile {
		return nil, fmt.Errorf("%s: %s: %w", s.name, name, fs.ErrNotExist)
	}
	if off < 0 || n < 0 || off+n > int64(len(s.data)) {
		return nil, fmt.Errorf("%s: %d bytes at %d run past the end", s.name, n, off)
	}
	return s.data[off : off+n], nil
}

func (s pickleSource) String() string { return s.name }
