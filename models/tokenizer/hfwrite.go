package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// loomPattern is Loom's pre-tokenizer (pretokenize) written as the regex of
// a Hugging Face Split pre-tokenizer, in the Oniguruma syntax the tokenizers
// library compiles: a run of white space before " X" (leaving that space to
// the word), then one class run (letters, which include every non-ASCII
// character, digits, other symbols) with at most one leading space, then a
// run of white space. White space is the six ASCII characters pretokenize
// counts; Go's RE2 has no lookahead, so patternMatcher scans it with
// pretokenize itself, and testdata/loom_pretok.json holds the pieces
// Python's re module cuts with this pattern, which the tests compare.
const loomPattern = `[ \t\n\r\x{0B}\x{0C}]+(?= [^ \t\n\r\x{0B}\x{0C}])| ?[A-Za-z\x{80}-\x{10FFFF}]+| ?[0-9]+| ?[^ \t\n\r\x{0B}\x{0C}A-Za-z0-9\x{80}-\x{10FFFF}]+|[ \t\n\r\x{0B}\x{0C}]+`

// HFFiles writes t as a Hugging Face tokenizer: tokenizer.json (a
// byte-level BPE whose Split pre-tokenizer is loomPattern, the merges in
// rank order, the special tokens as added tokens) and tokenizer_config.json
// (PreTrainedTokenizerFast, with <bos>, <eos> and <pad> in their roles and
// add_bos_token false: Loom's data pipeline adds them itself). Every id is
// the same in the files as in t, and transformers, the tokenizers library
// and ParseHF encode text to t's ids. It fails, naming the merge, when two
// merges make the same bytes, which a tokenizer.json vocabulary cannot
// hold.
func HFFiles(t *BPE) ([]File, error) {
	vocab := make(map[string]int, t.VocabSize())
	token := make([]string, len(t.tokens))
	for id, b := range t.tokens {
		s := byteLevel(string(b))
		if prev, dup := vocab[s]; dup {
			return nil, fmt.Errorf("merges[%d] makes %q, as id %d does: a tokenizer.json vocabulary holds each token once", id-256, b, prev)
		}
		vocab[s], token[id] = id, s
	}
	merges := make([]string, len(t.merges))
	for i, m := range t.merges {
		merges[i] = token[m[0]] + " " + token[m[1]]
	}
	type added struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	var adds []added
	decoder := map[string]any{}
	for i, s := range t.special {
		id := len(t.tokens) + i
		if _, dup := vocab[s]; dup {
			return nil, fmt.Errorf("special_tokens[%d] %q is also a regular token", i, s)
		}
		adds = append(adds, added{ID: id, Content: s, Special: true})
		decoder[fmt.Sprint(id)] = map[string]any{"content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
	}
	js := map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   adds,
		"normalizer":     nil,
		"post_processor": nil,
		"pre_tokenizer": map[string]any{
			"type": "Sequence",
			"pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]string{"Regex": loomPattern}, "behavior": "Isolated", "invert": false},
				map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
			},
		},
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": vocab, "merges": merges,
		},
	}
	main, err := marshalIndent(js)
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"tokenizer_class":              "PreTrainedTokenizerFast",
		"add_bos_token":                false,
		"add_eos_token":                false,
		"clean_up_tokenization_spaces": false,
		"model_max_length":             1 << 30,
		"added_tokens_decoder":         decoder,
	}
	for role, name := range map[string]string{"bos_token": BOS, "eos_token": EOS, "pad_token": Pad} {
		if _, ok := t.specID[name]; ok {
			cfg[role] = name
		}
	}
	cj, err := marshalIndent(cfg)
	if err != nil {
		return nil, err
	}
	return []File{{Name: "tokenizer.json", Data: main}, {Name: "tokenizer_config.json", Data: cj}}, nil
}

// marshalIndent is json.MarshalIndent without escaping <, > and &, which
// special tokens are made of.
func marshalIndent(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
