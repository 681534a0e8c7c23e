package promtest

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// ShortenFor returns the rule file src (Prometheus's YAML: groups of
// rules) with every rule's `for:` set to d, and every group's
// evaluation interval left to the server. The expressions, labels and
// annotations are untouched, so a test server evaluates the shipped
// rules, only sooner. It fails on a file that is not a rule file.
func ShortenFor(src []byte, d string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("rule file: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, fmt.Errorf("rule file: not a YAML document")
	}
	groups := field(doc.Content[0], "groups")
	if groups == nil || groups.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("rule file: no groups list")
	}
	n := 0
	for gi, g := range groups.Content {
		rules := field(g, "rules")
		if rules == nil || rules.Kind != yaml.SequenceNode {
			return nil, fmt.Errorf("rule file: group %d (line %d) has no rules list", gi, g.Line)
		}
		for _, r := range rules.Content {
			if f := field(r, "for"); f != nil {
				f.Value, f.Tag, f.Style = d, "!!str", 0
				n++
			}
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("rule file: no rule has a for: duration")
	}
	return yaml.Marshal(&doc)
}

// field returns the value of key in mapping node m, or nil.
func field(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
