package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// hfConfig is the part of a transformers tokenizer_config.json that Loom
// uses. Token fields are nil when absent or null.
type hfConfig struct {
	BOS, EOS, PAD, UNK *string
	AddBOS, AddEOS     *bool
	ChatTemplate       string
	ChatTemplates      map[string]string
}

// parseHFConfig reads tokenizer_config.json (cfg, may be nil) and
// chat_template.jinja (jinja, may be nil; it replaces the config's default
// template, as transformers does). Unknown fields are ignored: the file
// carries many Python-side settings (model_max_length, padding_side, ...)
// that do not change the ids. Errors are configErrors naming the field.
func parseHFConfig(cfg, jinja []byte) (*hfConfig, error) {
	c := &hfConfig{}
	if cfg != nil {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(cfg, &raw); err != nil {
			return nil, configError{fmt.Errorf("not a JSON object: %w", err)}
		}
		for name, dst := range map[string]**string{"bos_token": &c.BOS, "eos_token": &c.EOS, "pad_token": &c.PAD, "unk_token": &c.UNK} {
			v, ok := raw[name]
			if !ok {
				continue
			}
			s, err := addedTokenContent(v)
			if err != nil {
				return nil, configError{fmt.Errorf("%s: %w", name, err)}
			}
			*dst = s
		}
		for name, dst := range map[string]**bool{"add_bos_token": &c.AddBOS, "add_eos_token": &c.AddEOS} {
			v, ok := raw[name]
			if !ok || string(v) == "null" {
				continue
			}
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return nil, configError{fmt.Errorf("%s: want true or false, got %s", name, short(v))}
			}
			*dst = &b
		}
		if v, ok := raw["chat_template"]; ok && string(v) != "null" {
			if err := c.parseChatTemplate(v); err != nil {
				return nil, configError{err}
			}
		}
	}
	if jinja != nil {
		c.ChatTemplate = string(jinja)
	}
	return c, nil
}

// addedTokenContent reads a special-token field: a string, an AddedToken
// object ({"__type": "AddedToken", "content": ...}), or null.
func addedTokenContent(v json.RawMessage) (*string, error) {
	v = bytes.TrimSpace(v)
	if string(v) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return &s, nil
	}
	var o struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(v, &o); err != nil || o.Content == nil {
		return nil, fmt.Errorf("want a string or an AddedToken object with \"content\", got %s", short(v))
	}
	return o.Content, nil
}

func (c *hfConfig) parseChatTemplate(v json.RawMessage) error {
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		c.ChatTemplate = s
		return nil
	}
	var list []struct {
		Name     *string `json:"name"`
		Template *string `json:"template"`
	}
	if err := json.Unmarshal(v, &list); err != nil {
		return fmt.Errorf("chat_template: want a string or a list of {name, template}, got %s", short(v))
	}
	c.ChatTemplates = map[string]string{}
	for i, e := range list {
		if e.Name == nil || e.Template == nil {
			return fmt.Errorf("chat_template[%d]: want both \"name\" and \"template\"", i)
		}
		c.ChatTemplates[*e.Name] = *e.Template
	}
	c.ChatTemplate = c.ChatTemplates["default"]
	return nil
}

// apply sets the fields of s that the config gives. lookup maps a token's
// text to its id; a named token that is not in the vocabulary is an error.
func (c *hfConfig) apply(s *Specials, lookup func(string) (int, bool)) error {
	for _, f := range []struct {
		name string
		v    *string
		dst  *int
	}{{"bos_token", c.BOS, &s.BOS}, {"eos_token", c.EOS, &s.EOS}, {"pad_token", c.PAD, &s.PAD}, {"unk_token", c.UNK, &s.UNK}} {
		if f.v == nil {
			continue
		}
		id, ok := lookup(*f.v)
		if !ok {
			return configError{fmt.Errorf("%s: %q is not in the vocabulary", f.name, *f.v)}
		}
		*f.dst = id
	}
	if c.AddBOS != nil {
		s.AddBOS = *c.AddBOS
	}
	if c.AddEOS != nil {
		s.AddEOS = *c.AddEOS
	}
	if c.ChatTemplate != "" {
		s.ChatTemplate = c.ChatTemplate
	}
	if c.ChatTemplates != nil {
		s.ChatTemplates = c.ChatTemplates
	}
	return nil
}

// short quotes at most 60 bytes of a JSON value for an error message.
func short(v []byte) string {
	if len(v) > 60 {
		return string(v[:57]) + "..."
	}
	return string(v)
}

// sortTokens puts special tokens in id order.
func sortTokens(ts []SpecialToken) {
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].ID < ts[j].ID })
}
