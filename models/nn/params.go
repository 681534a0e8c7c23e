package nn

import (
	"fmt"
	"path"
	"strings"

	"github.com/loomtrain/loom/kernels"
)

// Params is a model's named parameter tree: every parameter has a dotted
// PyTorch-style name ("qformer.layer.3.crossattention.self.query.weight")
// and the tree keeps them in creation order, which is also the order of a
// saved checkpoint. Stages freeze, unfreeze or drop parameters by dotted
// glob pattern (see Match: "vit.*", "qformer.layer.*.intermediate_query.*",
// "**.bias").
//
// A Params is not safe for concurrent mutation; build and freeze it before
// training starts.
type Params struct {
	list   []*kernels.Tensor
	byName map[string]*kernels.Tensor
	frozen map[string]bool
}

// NewParams returns an empty tree.
func NewParams() *Params {
	return &Params{byName: map[string]*kernels.Tensor{}, frozen: map[string]bool{}}
}

// Add creates a zero-initialised parameter. It panics when the name is
// taken: two modules claiming one name is a programmer error.
func (p *Params) Add(name string, shape ...int) *kernels.Tensor {
	if _, dup := p.byName[name]; dup {
		panic(fmt.Sprintf("nn: parameter %q created twice", name))
	}
	t := kernels.NewParam(name, shape...)
	p.list = append(p.list, t)
	p.byName[name] = t
	return t
}

// Get returns the parameter called name, or nil.
func (p *Params) Get(name string) *kernels.Tensor { return p.byName[name] }

// All returns every parameter in creation order.
func (p *Params) All() []*kernels.Tensor { return append([]*kernels.Tensor(nil), p.list...) }

// Names returns every parameter name in creation order.
func (p *Params) Names() []string {
	out := make([]string, len(p.list))
	for i, t := range p.list {
		out[i] = t.Name
	}
	return out
}

// Count returns the number of scalar parameters.
func (p *Params) Count() int {
	n := 0
	for _, t := range p.list {
		n += t.Size()
	}
	return n
}

// Match reports whether the dotted name matches one of the patterns.
// Patterns are dotted too and are matched segment by segment: "*" matches
// one segment ("qformer.layer.*.output.dense.weight" does not match
// attention.output), "**" any number of segments, and other segments use
// path.Match syntax ("layer_*", "[0-5]"). A final "*" matches the whole
// remaining subtree ("vit.*" is everything under vit), and a pattern with
// no wildcard also names its subtree ("projector" matches
// "projector.0.weight").
func Match(name string, patterns ...string) bool {
	ns := strings.Split(name, ".")
	for _, pat := range patterns {
		if name == pat || (!strings.ContainsAny(pat, "*?[") && strings.HasPrefix(name, pat+".")) {
			return true
		}
		if matchSegs(strings.Split(pat, "."), ns) {
			return true
		}
	}
	return false
}

func matchSegs(pat, name []string) bool {
	if len(pat) == 0 {
		return len(name) == 0
	}
	if pat[0] == "**" {
		for k := 0; k <= len(name); k++ {
			if matchSegs(pat[1:], name[k:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	if len(pat) == 1 && pat[0] == "*" {
		return true
	}
	if ok, err := path.Match(pat[0], name[0]); err != nil || !ok {
		return false
	}
	return matchSegs(pat[1:], name[1:])
}

// ValidatePatterns returns an error naming the first malformed pattern.
func ValidatePatterns(patterns ...string) error {
	for _, pat := range patterns {
		for _, seg := range strings.Split(pat, ".") {
			if _, err := path.Match(seg, ""); err != nil {
				return fmt.Errorf("pattern %q: %w", pat, err)
			}
		}
	}
	return nil
}

// Select returns the parameters whose names match a pattern, in order.
func (p *Params) Select(patterns ...string) []*kernels.Tensor {
	var out []*kernels.Tensor
	for _, t := range p.list {
		if Match(t.Name, patterns...) {
			out = append(out, t)
		}
	}
	return out
}

// Freeze stops gradients for the matching parameters and returns how many
// it froze. A pattern that matches nothing is an error, so that a typo in a
// recipe does not silently train a module meant to be frozen.
func (p *Params) Freeze(patterns ...string) (int, error) { return p.setFrozen(true, patterns) }

// Unfreeze makes the matching parameters trainable again (see Freeze).
func (p *Params) Unfreeze(patterns ...string) (int, error) { return p.setFrozen(false, patterns) }

func (p *Params) setFrozen(v bool, patterns []string) (int, error) {
	if err := ValidatePatterns(patterns...); err != nil {
		return 0, err
	}
	n := 0
	for _, pat := range patterns {
		m := p.Select(pat)
		if len(m) == 0 {
			return n, fmt.Errorf("pattern %q matches no parameter", pat)
		}
		for _, t := range m {
			t.SetRequiresGrad(!v)
			p.frozen[t.Name] = v
			n++
		}
	}
	return n, nil
}

// Frozen reports whether the parameter called name is frozen.
func (p *Params) Frozen(name string) bool { return p.frozen[name] }

// Trainable returns the parameters that are not frozen, in order: what an
// optimizer should update.
func (p *Params) Trainable() []*kernels.Tensor {
	var out []*kernels.Tensor
	for _, t := range p.list {
		if !p.frozen[t.Name] {
			out = append(out, t)
		}
	}
	return out
}

// Drop removes the matching parameters from the tree (BLIP-2 stage 2 drops
// the Q-Former's text side) and returns how many it removed. The module that
// owned them must no longer be run; models expose this through their own
// options (see the families' DropTextSide). A pattern matching nothing is an
// error.
func (p *Params) Drop(patterns ...string) (int, error) {
	if err := ValidatePatterns(patterns...); err != nil {
		return 0, err
	}
	for _, pat := range patterns {
		if len(p.Select(pat)) == 0 {
			return 0, fmt.Errorf("pattern %q matches no parameter", pat)
		}
	}
	keep := p.list[:0]
	n := 0
	for _, t := range p.list {
		if Match(t.Name, patterns...) {
			delete(p.byName, t.Name)
			delete(p.frozen, t.Name)
			n++
			continue
		}
		keep = append(keep, t)
	}
	for i := len(keep); i < len(p.list); i++ {
		p.list[i] = nil
	}
	p.list = keep
	return n, nil
}

// ZeroGrad zeroes the gradient of every parameter.
func (p *Params) ZeroGrad() {
	for _, t := range p.list {
		t.ZeroGrad()
	}
}
