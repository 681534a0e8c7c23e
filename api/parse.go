package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxManifestSize bounds the manifest file ParseManifest accepts.
const MaxManifestSize = 1 << 20

// LoadManifest reads and parses the manifest file at path.
func LoadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseManifest(path, b)
}

// ParseManifest decodes a YAML manifest strictly, fills in defaults and
// validates it. file names the source in error messages. Errors are a
// *ManifestError naming the line and field path of every problem: unknown
// fields, duplicate keys, values of the wrong type and invalid values.
func ParseManifest(file string, data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, &ManifestError{Errs: []*FieldError{{File: file, Msg: fmt.Sprintf("manifest is %d bytes; the limit is %d", len(data), MaxManifestSize)}}}
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ManifestError{Errs: []*FieldError{{File: file, Msg: "the manifest is empty"}}}
		}
		return nil, &ManifestError{Errs: []*FieldError{{File: file, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &ManifestError{Errs: []*FieldError{{File: file, Line: extra.Line, Msg: "more than one YAML document; a manifest is one document"}}}
	} else if !errors.Is(err, io.EOF) {
		return nil, &ManifestError{Errs: []*FieldError{{File: file, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	d := &decoder{c: checker{file: file, lines: map[string]int{}}}
	var m Manifest
	n := &root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil, &ManifestError{Errs: []*FieldError{{File: file, Msg: "the manifest is empty"}}}
		}
		n = n.Content[0]
	}
	d.manifest(n, &m)
	if len(d.c.errs) > 0 {
		return nil, &ManifestError{Errs: d.c.errs}
	}
	m.Default()
	if err := m.validate(file, d.c.lines); err != nil {
		return nil, err
	}
	m.src.file, m.src.lines = file, d.c.lines
	return &m, nil
}

// Normalized returns the manifest as YAML with every default written out and
// keys in a fixed order. Parsing the result gives back an equal manifest.
func (m *Manifest) Normalized() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decoder walks a yaml.Node tree, recording each path's line and collecting
// errors instead of stopping at the first.
type decoder struct {
	c checker
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.c.errs = append(d.c.errs, &FieldError{File: d.c.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing (null)"
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int":
			return "the integer " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		}
		return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
	case yaml.AliasNode:
		return "an unresolvable alias"
	}
	return "something else"
}

// fields decodes a mapping whose keys are all in handlers.
func (d *decoder) fields(n *yaml.Node, path string, handlers map[string]func(v *yaml.Node, p string)) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		p := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "want a field name, got %s", describe(k))
			continue
		}
		if k.Value == "<<" {
			d.fail(k, path, "merge keys (<<) are not supported")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, p, "duplicate field (first set on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		h, ok := handlers[k.Value]
		if !ok {
			d.fail(k, p, "unknown field; known fields here: %s", strings.Join(sortedKeys(handlers), ", "))
			continue
		}
		d.c.lines[p] = k.Line
		h(v, p)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) scalar(n *yaml.Node, path, want string, tags ...string) (*yaml.Node, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode {
		for _, t := range tags {
			if n.ShortTag() == t {
				return n, true
			}
		}
	}
	d.fail(n, path, "want %s, got %s", want, describe(n))
	return n, false
}

func (d *decoder) str(n *yaml.Node, path string, dst *string) {
	if n, ok := d.scalar(n, path, "a string", "!!str"); ok {
		*dst = n.Value
	}
}

func (d *decoder) bool(n *yaml.Node, path string, dst *bool) {
	if n, ok := d.scalar(n, path, "true or false", "!!bool"); ok {
		*dst = n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
	}
}

func (d *decoder) int64(n *yaml.Node, path string, dst *int64) {
	n, ok := d.scalar(n, path, "an integer", "!!int")
	if !ok {
		return
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	if err != nil {
		d.fail(n, path, "integer %s is out of range", n.Value)
		return
	}
	*dst = v
}

func (d *decoder) int(n *yaml.Node, path string, dst *int) {
	var v int64
	before := len(d.c.errs)
	d.int64(n, path, &v)
	if len(d.c.errs) != before {
		return
	}
	if v > math.MaxInt32 || v < math.MinInt32 {
		d.fail(resolve(n), path, "integer %d is out of range", v)
		return
	}
	*dst = int(v)
}

func (d *decoder) float(n *yaml.Node, path string, dst *float64) {
	n, ok := d.scalar(n, path, "a number", "!!int", "!!float")
	if !ok {
		return
	}
	var v float64
	if n.ShortTag() == "!!int" {
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil {
			d.fail(n, path, "integer %s is out of range", n.Value)
			return
		}
		v = float64(i)
	} else if err := n.Decode(&v); err != nil {
		d.fail(n, path, "want a number, got %s", describe(n))
		return
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		d.fail(n, path, "want a finite number, got %s", n.Value)
		return
	}
	*dst = v
}

func (d *decoder) duration(n *yaml.Node, path string, dst *Duration) {
	n, ok := d.scalar(n, path, `a duration such as "90s" or "5m"`, "!!str")
	if !ok {
		return
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.fail(n, path, `%q is not a duration: want e.g. "90s" or "5m"`, n.Value)
		return
	}
	*dst = Duration(v)
}

func (d *decoder) list(n *yaml.Node, path string, each func(i int, v *yaml.Node, p string)) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list, got %s", describe(n))
		return
	}
	for i, v := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.c.lines[p] = v.Line
		each(i, v, p)
	}
}

// weights decodes a mapping of name → number.
func (d *decoder) weights(n *yaml.Node, path string, dst *map[string]float64) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of name: weight, got %s", describe(n))
		return
	}
	out := map[string]float64{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.fail(k, path, "want a name, got %s", describe(k))
			continue
		}
		p := join(path, k.Value)
		if _, dup := out[k.Value]; dup {
			d.fail(k, p, "duplicate key")
			continue
		}
		d.c.lines[p] = k.Line
		var w float64
		d.float(n.Content[i+1], p, &w)
		out[k.Value] = w
	}
	*dst = out
}

func (d *decoder) manifest(n *yaml.Node, m *Manifest) {
	d.fields(n, "", map[string]func(*yaml.Node, string){
		"name":   func(v *yaml.Node, p string) { d.str(v, p, &m.Name) },
		"recipe": func(v *yaml.Node, p string) { d.str(v, p, &m.Recipe) },
		"model": func(v *yaml.Node, p string) {
			d.fields(v, p, map[string]func(*yaml.Node, string){
				"size":      func(v *yaml.Node, p string) { d.str(v, p, &m.Model.Size) },
				"tokenizer": func(v *yaml.Node, p string) { d.str(v, p, &m.Model.Tokenizer) },
			})
		},
		"seed": func(v *yaml.Node, p string) { d.int64(v, p, &m.Seed) },
		"init": func(v *yaml.Node, p string) { d.init(v, p, m) },
		"datasets": func(v *yaml.Node, p string) {
			d.list(v, p, func(_ int, v *yaml.Node, p string) {
				var ds Dataset
				d.fields(v, p, map[string]func(*yaml.Node, string){
					"name":   func(v *yaml.Node, p string) { d.str(v, p, &ds.Name) },
					"uri":    func(v *yaml.Node, p string) { d.str(v, p, &ds.URI) },
					"weight": func(v *yaml.Node, p string) { d.float(v, p, &ds.Weight) },
				})
				m.Datasets = append(m.Datasets, ds)
			})
		},
		"global_batch": func(v *yaml.Node, p string) { d.int(v, p, &m.GlobalBatch) },
		"elastic": func(v *yaml.Node, p string) {
			d.fields(v, p, map[string]func(*yaml.Node, string){
				"min": func(v *yaml.Node, p string) { d.int(v, p, &m.Elastic.Min) },
				"max": func(v *yaml.Node, p string) { d.int(v, p, &m.Elastic.Max) },
			})
		},
		"parallelism": func(v *yaml.Node, p string) {
			d.fields(v, p, map[string]func(*yaml.Node, string){
				"shard": func(v *yaml.Node, p string) { d.str(v, p, &m.Parallelism.Shard) },
			})
		},
		"checkpoint": func(v *yaml.Node, p string) {
			d.fields(v, p, map[string]func(*yaml.Node, string){
				"interval": func(v *yaml.Node, p string) { d.int64(v, p, &m.Checkpoint.Interval) },
				"keep":     func(v *yaml.Node, p string) { d.int(v, p, &m.Checkpoint.Keep) },
				"uri":      func(v *yaml.Node, p string) { d.str(v, p, &m.Checkpoint.URI) },
			})
		},
		"eval": func(v *yaml.Node, p string) {
			m.Eval = &EvalPolicy{}
			d.fields(v, p, map[string]func(*yaml.Node, string){
				"uri":     func(v *yaml.Node, p string) { d.str(v, p, &m.Eval.URI) },
				"every":   func(v *yaml.Node, p string) { d.int64(v, p, &m.Eval.Every) },
				"samples": func(v *yaml.Node, p string) { d.int(v, p, &m.Eval.Samples) },
			})
		},
		"failure": func(v *yaml.Node, p string) {
			d.fields(v, p, map[string]func(*yaml.Node, string){
				"max_restarts": func(v *yaml.Node, p string) { d.int(v, p, &m.Failure.MaxRestarts) },
				"stall_factor": func(v *yaml.Node, p string) { d.float(v, p, &m.Failure.StallFactor) },
				"stall_grace":  func(v *yaml.Node, p string) { d.duration(v, p, &m.Failure.StallGrace) },
			})
		},
		"defaults": func(v *yaml.Node, p string) { d.hyper(v, p, &m.Defaults) },
		"stages": func(v *yaml.Node, p string) {
			d.list(v, p, func(_ int, v *yaml.Node, p string) {
				var s Stage
				d.fields(v, p, map[string]func(*yaml.Node, string){
					"name":         func(v *yaml.Node, p string) { d.str(v, p, &s.Name) },
					"steps":        func(v *yaml.Node, p string) { d.int64(v, p, &s.Steps) },
					"global_batch": func(v *yaml.Node, p string) { d.int(v, p, &s.GlobalBatch) },
					"datasets":     func(v *yaml.Node, p string) { d.weights(v, p, &s.Datasets) },
					"init_from":    func(v *yaml.Node, p string) { d.str(v, p, &s.InitFrom) },
					"overrides":    func(v *yaml.Node, p string) { d.hyper(v, p, &s.Overrides) },
				})
				m.Stages = append(m.Stages, s)
			})
		},
	})
}

// init decodes the init block: part name → {uri | job, step}, and the
// checkpoint block the coordinator adds to the normalised form.
func (d *decoder) init(n *yaml.Node, path string, m *Manifest) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of part name to source, got %s", describe(n))
		return
	}
	if m.Init == nil {
		m.Init = map[string]InitSource{}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		p := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "want a part name, got %s", describe(k))
			continue
		}
		d.c.lines[p] = k.Line
		if _, dup := m.Init[k.Value]; dup {
			d.fail(k, p, "part %q is listed twice", k.Value)
			continue
		}
		var src InitSource
		d.fields(n.Content[i+1], p, map[string]func(*yaml.Node, string){
			"uri":  func(v *yaml.Node, p string) { d.str(v, p, &src.URI) },
			"job":  func(v *yaml.Node, p string) { d.str(v, p, &src.Job) },
			"step": func(v *yaml.Node, p string) { d.int64(v, p, &src.Step) },
			"checkpoint": func(v *yaml.Node, p string) {
				rc := &ResolvedCheckpoint{}
				d.fields(v, p, map[string]func(*yaml.Node, string){
					"step":  func(v *yaml.Node, p string) { d.int64(v, p, &rc.Step) },
					"stage": func(v *yaml.Node, p string) { d.int(v, p, &rc.Stage) },
					"objects": func(v *yaml.Node, p string) {
						d.list(v, p, func(_ int, v *yaml.Node, p string) {
							var o CheckpointObject
							d.fields(v, p, map[string]func(*yaml.Node, string){
								"path":   func(v *yaml.Node, p string) { d.str(v, p, &o.Path) },
								"sha256": func(v *yaml.Node, p string) { d.str(v, p, &o.SHA256) },
								"size":   func(v *yaml.Node, p string) { d.int64(v, p, &o.Size) },
							})
							rc.Objects = append(rc.Objects, o)
						})
					},
				})
				src.Checkpoint = rc
			},
		})
		m.Init[k.Value] = src
	}
}

// set is a field handler that reads a value with read and, only if it
// parsed, points dst at it (an unparsable value leaves the field unset).
func set[T any](d *decoder, read func(*yaml.Node, string, *T), dst **T) func(*yaml.Node, string) {
	return func(v *yaml.Node, p string) {
		var x T
		before := len(d.c.errs)
		read(v, p, &x)
		if len(d.c.errs) == before {
			*dst = &x
		}
	}
}

func (d *decoder) hyper(n *yaml.Node, path string, h *Hyperparameters) {
	f := func(dst **float64) func(*yaml.Node, string) { return set(d, d.float, dst) }
	i := func(dst **int) func(*yaml.Node, string) { return set(d, d.int, dst) }
	d.fields(n, path, map[string]func(*yaml.Node, string){
		"lr":              f(&h.LR),
		"min_lr":          f(&h.MinLR),
		"weight_decay":    f(&h.WeightDecay),
		"beta1":           f(&h.Beta1),
		"beta2":           f(&h.Beta2),
		"eps":             f(&h.Eps),
		"grad_clip":       f(&h.GradClip),
		"rope_theta":      f(&h.RopeTheta),
		"label_smoothing": f(&h.LabelSmoothing),
		"micro_batch":     i(&h.MicroBatch),
		"max_seq_len":     i(&h.MaxSeqLen),
		"image_size":      i(&h.ImageSize),
		"recompute":       set(d, d.bool, &h.Recompute),
		"warmup_steps":    set(d, d.int64, &h.WarmupSteps),
		"schedule":        set(d, d.str, &h.Schedule),
		"trainable": func(v *yaml.Node, p string) {
			h.Trainable = []string{}
			d.list(v, p, func(_ int, v *yaml.Node, p string) {
				var s string
				d.str(v, p, &s)
				h.Trainable = append(h.Trainable, s)
			})
		},
		"losses": func(v *yaml.Node, p string) { d.weights(v, p, &h.Losses) },
	})
}
