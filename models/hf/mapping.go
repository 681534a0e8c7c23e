package hf

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
)

// Entry maps one tensor of a checkpoint onto Loom parameters.
//
// By default the checkpoint tensor is copied into each of Loom (one name
// is the usual case; several copy it into each, as BERT's FFN seeds both of
// the Q-Former's FFNs). With Split it is cut along dim 0 into the Loom
// parameters in order, each taking as many rows as it has (fused
// q;k;v). Shapes must match after leading 1-sized dimensions are dropped
// from both sides (HF's [1, 32, 768] query tokens load into [32, 768]).
type Entry struct {
	HF   string
	Loom []string
	// Split cuts the tensor along dim 0 into the Loom parameters.
	Split bool
	// Alt are checkpoint names tried in order when HF is absent: the
	// embedding for a tied lm_head, an unprefixed key.
	Alt []string
	// Optional: when neither HF nor an Alt is present, the Loom parameters
	// keep their initialisation (reported as random).
	Optional bool
	// PadRows: the checkpoint's dim 0 may be smaller than Loom's (a
	// vocabulary Loom extended with its special tokens); the rows it has
	// are copied, the others keep their initialisation.
	PadRows bool
	// Convert, when set, turns the checkpoint's (shape, values) into the
	// Loom layout before copying or splitting (a transpose, a Meta→HF
	// row permutation). Invert is its inverse, for Export. Both are also
	// called with nil values to learn the resulting shape only, and must
	// keep the number of elements.
	Convert, Invert func(shape []int, v []float32) ([]int, []float32, error)
	// HFShape is the tensor's shape in the checkpoint when it differs from
	// the Loom parameter's by leading 1s (Export writes it).
	HFShape []int
	// NoExport leaves the entry out of Export (a second name for a tensor
	// another entry writes, such as a tied head).
	NoExport bool
}

// Mapping is one architecture's table from Hugging Face tensor names to
// Loom's parameter tree.
type Mapping struct {
	// Arch names the layout in messages ("LlamaForCausalLM").
	Arch    string
	Entries []Entry
	// Zero are Loom parameters with no counterpart that the architecture
	// fixes at zero (EVA's k bias).
	Zero []string
	// Ignore are nn.Match patterns of checkpoint tensors that are read by
	// nobody (rotary inv_freq buffers, heads Loom does not build). Any
	// other checkpoint tensor that no entry reads is an error.
	Ignore []string
	// Scope are nn.Match patterns of the Loom parameters the mapping is
	// meant to initialise; Plan.RandomInit lists those in scope that no
	// entry covers. Empty: every parameter.
	Scope []string
}

// Prefixed returns m with prefix added to every HF name (Alt included) and
// Ignore pattern: a component inside a whole-model checkpoint
// ("language_model.").
func (m Mapping) Prefixed(prefix string) Mapping {
	out := m
	out.Entries = make([]Entry, len(m.Entries))
	for i, e := range m.Entries {
		e.HF = prefix + e.HF
		e.Alt = slices.Clone(e.Alt)
		for j := range e.Alt {
			e.Alt[j] = prefix + e.Alt[j]
		}
		out.Entries[i] = e
	}
	out.Ignore = make([]string, len(m.Ignore))
	for i, p := range m.Ignore {
		out.Ignore[i] = prefix + p
	}
	return out
}

// Join concatenates mappings into one (a whole model from its parts).
func Join(arch string, ms ...Mapping) Mapping {
	out := Mapping{Arch: arch}
	for _, m := range ms {
		out.Entries = append(out.Entries, m.Entries...)
		out.Zero = append(out.Zero, m.Zero...)
		out.Ignore = append(out.Ignore, m.Ignore...)
		out.Scope = append(out.Scope, m.Scope...)
	}
	return out
}

// PlanItem is one checkpoint tensor and where it goes.
type PlanItem struct {
	Tensor TensorInfo
	Loom   []string
	Split  bool
	Rows   int // PadRows: rows copied (0: all)
	entry  int
}

// Plan says what a load will do, before any data is read.
type Plan struct {
	Arch   string
	Source string
	Items  []PlanItem // in read order (file, then offset)
	Zeroed []string
	// RandomInit are the Loom parameters in scope that keep their
	// initialisation: no entry covers them, an optional tensor is absent,
	// or rows a padded vocabulary adds.
	RandomInit []string
	// Ignored are checkpoint tensors that the mapping reads on purpose by
	// nobody.
	Ignored []string
	// Bytes is the sum of the items' sizes in the checkpoint.
	Bytes int64
}

// MakePlan checks a mapping against a checkpoint and a parameter tree
// without reading tensor data: every entry's tensor must exist (or be
// optional), every Loom name must be a parameter, shapes must agree, and
// no checkpoint tensor may go unread unless ignored. Errors name the file
// and the tensor.
func MakePlan(c *Checkpoint, m Mapping, p *nn.Params) (*Plan, error) {
	pl := &Plan{Arch: m.Arch, Source: c.src.String()}
	used := map[string]bool{}
	covered := map[string]bool{}
	for i, e := range m.Entries {
		if len(e.Loom) == 0 {
			return nil, fmt.Errorf("%s: mapping %s: entry %q names no Loom parameter", c.src, m.Arch, e.HF)
		}
		name := ""
		for _, n := range append([]string{e.HF}, e.Alt...) {
			if _, ok := c.tensors[n]; ok {
				name = n
				break
			}
		}
		dst := make([]*kernels.Tensor, len(e.Loom))
		for j, ln := range e.Loom {
			if dst[j] = p.Get(ln); dst[j] == nil {
				return nil, fmt.Errorf("%s: mapping %s: %q maps to %q, which the model does not have", c.src, m.Arch, e.HF, ln)
			}
		}
		if name == "" {
			if e.Optional {
				continue
			}
			alt := ""
			if len(e.Alt) > 0 {
				alt = fmt.Sprintf(" (nor %s)", strings.Join(e.Alt, ", "))
			}
			return nil, fmt.Errorf("%s: %s: missing tensor %q%s, needed for %s", c.src, m.Arch, e.HF, alt, strings.Join(e.Loom, ", "))
		}
		t := c.tensors[name]
		used[name] = true
		shape := t.Shape
		if e.Convert != nil {
			s, _, err := e.Convert(slices.Clone(shape), nil)
			if err != nil {
				return nil, fmt.Errorf("%s/%s: tensor %q: %w", c.src, t.File, name, err)
			}
			shape = s
		}
		it := PlanItem{Tensor: t, Loom: e.Loom, Split: e.Split, entry: i}
		if err := checkShapes(shape, dst, e, &it); err != nil {
			return nil, fmt.Errorf("%s/%s: tensor %q (%s): %w", c.src, t.File, name, m.Arch, err)
		}
		for _, ln := range e.Loom {
			covered[ln] = true
		}
		if it.Rows > 0 {
			pl.RandomInit = append(pl.RandomInit, fmt.Sprintf("%s rows %d..%d", e.Loom[0], it.Rows, dst[0].Shape[0]-1))
		}
		pl.Items = append(pl.Items, it)
		pl.Bytes += t.Bytes
	}
	for _, z := range m.Zero {
		if p.Get(z) == nil {
			return nil, fmt.Errorf("%s: mapping %s: zero parameter %q is not in the model", c.src, m.Arch, z)
		}
		covered[z] = true
		pl.Zeroed = append(pl.Zeroed, z)
	}
	for _, t := range c.Tensors() {
		if used[t.Name] {
			continue
		}
		if nn.Match(t.Name, m.Ignore...) {
			pl.Ignored = append(pl.Ignored, t.Name)
			continue
		}
		return nil, fmt.Errorf("%s/%s: unexpected tensor %q: %s has no place for it", c.src, t.File, t.Name, m.Arch)
	}
	for _, n := range p.Names() {
		if covered[n] || (len(m.Scope) > 0 && !nn.Match(n, m.Scope...)) {
			continue
		}
		pl.RandomInit = append(pl.RandomInit, n)
	}
	sort.SliceStable(pl.Items, func(i, j int) bool {
		a, b := pl.Items[i].Tensor, pl.Items[j].Tensor
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Off < b.Off
	})
	return pl, nil
}

func squeeze(s []int) []int {
	for len(s) > 1 && s[0] == 1 {
		s = s[1:]
	}
	return s
}

func checkShapes(shape []int, dst []*kernels.Tensor, e Entry, it *PlanItem) error {
	src := squeeze(shape)
	if e.Split {
		rows := 0
		for _, d := range dst {
			ds := squeeze(d.Shape)
			if len(ds) != len(src) || !slices.Equal(ds[1:], src[1:]) {
				return fmt.Errorf("shape %v does not split along dim 0 into %s %v", shape, d.Name, d.Shape)
			}
			rows += ds[0]
		}
		if rows != src[0] {
			return fmt.Errorf("shape %v: dim 0 is %d, the parameters %s take %d rows", shape, src[0], strings.Join(e.Loom, ", "), rows)
		}
		return nil
	}
	for _, d := range dst {
		ds := squeeze(d.Shape)
		if slices.Equal(ds, src) {
			continue
		}
		if e.PadRows && len(ds) == len(src) && len(ds) > 0 && slices.Equal(ds[1:], src[1:]) && src[0] < ds[0] {
			it.Rows = src[0]
			continue
		}
		return fmt.Errorf("shape %v, but %s is %v", shape, d.Name, d.Shape)
	}
	return nil
}

// Load checks the plan (MakePlan) and every tensor's dtype, and then
// streams the checkpoint into the parameters in file order, with a few
// range reads of at most 16 MiB in flight, each decoded straight into the
// parameters as it arrives: besides the model, at most those reads' bytes
// are held (and, for an entry with a Convert, that one tensor as
// float32). Nothing is written unless the whole plan checks; after a
// failed read, the parameters may hold part of the checkpoint.
func Load(ctx context.Context, c *Checkpoint, m Mapping, p *nn.Params) (*Plan, error) {
	pl, err := MakePlan(c, m, p)
	if err != nil {
		return nil, err
	}
	if err := c.load(ctx, pl, m, p, defaultLoad); err != nil {
		return nil, err
	}
	for _, z := range pl.Zeroed {
		clear(p.Get(z).Data)
	}
	return pl, nil
}
