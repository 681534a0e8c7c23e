package hf

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/loomtrain/loom/models"
)

// Layout is one Hugging Face layout that can initialise a part of a Loom
// model: what config.json's model_type says, how the config shapes the
// part, and the mapping of its tensors. Parts are "llm", "vision",
// "qformer" (components) and "model" (a whole model such as
// LlavaForConditionalGeneration).
type Layout struct {
	// Name is the transformers class ("LlamaForCausalLM").
	Name string
	Part string
	// ModelTypes are the config.json model_type values it reads.
	ModelTypes []string
	// Families are the Loom families it fits; nil: every family that has
	// the part.
	Families []models.Family
	// Configure sets the part's shape in cfg from config.json.
	Configure func(config []byte, cfg *models.Config) error
	// Mapping is the tensor table for a model built from cfg.
	Mapping func(cfg models.Config) (Mapping, error)
	// ConfigJSON writes config.json for the part of cfg (export); nil:
	// the layout is import-only.
	ConfigJSON func(cfg models.Config) ([]byte, error)
	// Exports says whether the layout writes cfg's part (the LLM kind, the
	// vision tower's flavour); nil: whenever ConfigJSON is set.
	Exports func(cfg models.Config) bool
}

// ExportLayout returns the layout that writes part of a model built from
// cfg.
func ExportLayout(part string, cfg models.Config) (*Layout, error) {
	var names []string
	for i := range layouts {
		l := &layouts[i]
		if l.Part != part || l.ConfigJSON == nil || (l.Families != nil && !slices.Contains(l.Families, cfg.Family)) {
			continue
		}
		names = append(names, l.Name)
		if l.Exports == nil || l.Exports(cfg) {
			return l, nil
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no Hugging Face layout writes the %s of a %s model", part, cfg.Family)
	}
	return nil, fmt.Errorf("the %s of this %s model fits none of %s", part, cfg.Family, strings.Join(names, ", "))
}

var layouts []Layout

// register adds a layout (the layout files call it from init).
func register(l Layout) {
	for _, o := range layouts {
		if o.Part == l.Part {
			for _, t := range l.ModelTypes {
				if slices.Contains(o.ModelTypes, t) && familiesOverlap(o.Families, l.Families) {
					panic(fmt.Sprintf("hf: model_type %q of part %s registered by %s and %s", t, l.Part, o.Name, l.Name))
				}
			}
		}
	}
	layouts = append(layouts, l)
}

func familiesOverlap(a, b []models.Family) bool {
	if a == nil || b == nil {
		return true
	}
	for _, f := range a {
		if slices.Contains(b, f) {
			return true
		}
	}
	return false
}

// Layouts lists the registered layouts, by part then name.
func Layouts() []Layout {
	out := slices.Clone(layouts)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Part != out[j].Part {
			return out[i].Part < out[j].Part
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// ModelType reads config.json's model_type.
func ModelType(config []byte) (string, error) {
	var head struct {
		ModelType string `json:"model_type"`
	}
	if err := json.Unmarshal(config, &head); err != nil {
		return "", fmt.Errorf("%s: %w", ConfigFile, err)
	}
	if head.ModelType == "" {
		return "", fmt.Errorf("%s: no model_type", ConfigFile)
	}
	return head.ModelType, nil
}

// FindLayout returns the layout that initialises part of a model of
// family f from a directory whose config.json is config. The error lists
// what the part accepts.
func FindLayout(part string, f models.Family, config []byte) (*Layout, error) {
	if config == nil {
		return nil, fmt.Errorf("no %s: the model_type it holds says which layout the tensors are in", ConfigFile)
	}
	mt, err := ModelType(config)
	if err != nil {
		return nil, err
	}
	var accept []string
	for i, l := range layouts {
		if l.Part != part || (l.Families != nil && !slices.Contains(l.Families, f)) {
			continue
		}
		if slices.Contains(l.ModelTypes, mt) {
			return &layouts[i], nil
		}
		accept = append(accept, l.ModelTypes...)
	}
	sort.Strings(accept)
	if len(accept) == 0 {
		return nil, fmt.Errorf("%s: model_type %q: no Hugging Face layout initialises the %s of a %s model yet", ConfigFile, mt, part, f)
	}
	return nil, fmt.Errorf("%s: model_type %q cannot initialise the %s of a %s model: want one of %s", ConfigFile, mt, part, f, strings.Join(accept, ", "))
}

// VisionPrefix is the Loom parameter prefix of a family's vision tower.
func VisionPrefix(f models.Family) string {
	if f == models.QwenVL {
		return "visual"
	}
	return "vit"
}
