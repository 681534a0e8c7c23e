package nn

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/safetensors"
)

// StateTensors returns the parameters as safetensors F32 tensors (BF16 when
// bf16 is set), in tree order, with PyTorch names and layouts.
func (p *Params) StateTensors(bf16 bool) []safetensors.Tensor {
	out := make([]safetensors.Tensor, len(p.list))
	for i, t := range p.list {
		if bf16 {
			out[i] = safetensors.BF16Tensor(t.Name, t.Shape, t.Data)
		} else {
			out[i] = safetensors.F32Tensor(t.Name, t.Shape, t.Data)
		}
	}
	return out
}

// Save writes every parameter to w as a safetensors file with metadata.
func (p *Params) Save(w io.Writer, metadata map[string]string) error {
	return safetensors.Write(w, p.StateTensors(false), metadata)
}

// SaveFile writes every parameter to path (atomically).
func (p *Params) SaveFile(path string, metadata map[string]string) error {
	return safetensors.WriteFile(path, p.StateTensors(false), metadata)
}

// LoadOptions make partial loading explicit.
type LoadOptions struct {
	// Only restricts loading to the model parameters matching these
	// patterns (e.g. "projector.*"); nil means every parameter. Every
	// selected parameter must be in the file, and every file tensor that
	// maps to a selected name must exist in the model.
	Only []string
	// Skip names file tensors to ignore even when they fall under Only, by
	// their name in the file (e.g. the Q-Former text side,
	// "qformer.layer.*.intermediate.*", when a stage-1 checkpoint is loaded
	// into a stage-2 model that dropped it).
	Skip []string
	// Rename maps a file tensor name to a model name by replacing a prefix:
	// {"Qformer.": "qformer."}. Applied before Only; at most one prefix
	// applies per name (the longest).
	Rename map[string]string
}

// Load copies the tensors of f into the parameters. Without options it
// requires an exact match: a parameter missing from the file, a file tensor
// with no parameter (extra), or a shape mismatch fails naming the tensor,
// and nothing is written unless everything checks (the model is never left
// half-loaded). It returns the names it loaded.
func (p *Params) Load(f *safetensors.File, opt LoadOptions) ([]string, error) {
	if err := ValidatePatterns(append(slices.Clone(opt.Only), opt.Skip...)...); err != nil {
		return nil, err
	}
	selected := func(name string) bool { return len(opt.Only) == 0 || Match(name, opt.Only...) }
	type item struct {
		param *kernels.Tensor
		file  string
	}
	var todo []item
	seen := map[string]string{} // model name -> file name
	for _, fname := range f.Names() {
		if Match(fname, opt.Skip...) {
			continue
		}
		name := rename(fname, opt.Rename)
		if !selected(name) {
			continue
		}
		if prev, dup := seen[name]; dup {
			return nil, fmt.Errorf("tensors %q and %q both map to parameter %q", prev, fname, name)
		}
		seen[name] = fname
		t := p.byName[name]
		if t == nil {
			return nil, fmt.Errorf("tensor %q: the model has no parameter %q (extra tensor; use LoadOptions.Only or Skip to load part of a file)", fname, name)
		}
		in, _ := f.Info(fname)
		if !slices.Equal(in.Shape, t.Shape) {
			return nil, fmt.Errorf("tensor %q: shape %v in the file, parameter %q has shape %v", fname, in.Shape, name, t.Shape)
		}
		todo = append(todo, item{t, fname})
	}
	for _, t := range p.list {
		if selected(t.Name) {
			if _, ok := seen[t.Name]; !ok {
				return nil, fmt.Errorf("parameter %q: missing from the file", t.Name)
			}
		}
	}
	if len(todo) == 0 {
		return nil, fmt.Errorf("no tensor of the file matches %v", opt.Only)
	}
	vals := make([][]float32, len(todo))
	for i, it := range todo {
		v, err := f.Float32(it.file)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	names := make([]string, len(todo))
	for i, it := range todo {
		copy(it.param.Data, vals[i])
		names[i] = it.param.Name
	}
	return names, nil
}

func rename(name string, m map[string]string) string {
	best := ""
	for from := range m {
		if strings.HasPrefix(name, from) && len(from) > len(best) {
			best = from
		}
	}
	if best == "" {
		return name
	}
	return m[best] + name[len(best):]
}
