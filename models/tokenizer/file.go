package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// Format is the "format" value of the JSON files Save writes.
const Format = "loom-bpe-v1"

// Pretokenizer names the pre-tokenization rule the merges were trained with.
const Pretokenizer = "loom-words-v1"

// fileJSON is the on-disk form. Ids are implicit: merges[i] creates id
// 256+i and special_tokens[j] is id 256+len(merges)+j.
type fileJSON struct {
	Format        string   `json:"format"`
	Pretokenizer  string   `json:"pretokenizer"`
	VocabSize     int      `json:"vocab_size"`
	Merges        [][2]int `json:"merges"`
	SpecialTokens []string `json:"special_tokens"`
}

// Marshal returns the JSON form of t.
func Marshal(t *BPE) ([]byte, error) {
	f := fileJSON{
		Format:        Format,
		Pretokenizer:  Pretokenizer,
		VocabSize:     t.VocabSize(),
		Merges:        t.merges,
		SpecialTokens: t.special,
	}
	if f.Merges == nil {
		f.Merges = [][2]int{}
	}
	return json.Marshal(f)
}

// Unmarshal parses the JSON form written by Marshal. Errors name the field
// at fault; unknown fields are errors.
func Unmarshal(data []byte) (*BPE, error) {
	var f fileJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON object")
	}
	if f.Format != Format {
		return nil, fmt.Errorf("format: got %q, want %q", f.Format, Format)
	}
	if f.Pretokenizer != Pretokenizer {
		return nil, fmt.Errorf("pretokenizer: got %q, want %q", f.Pretokenizer, Pretokenizer)
	}
	t, err := NewBPE(f.Merges, f.SpecialTokens)
	if err != nil {
		return nil, err
	}
	if f.VocabSize != t.VocabSize() {
		return nil, fmt.Errorf("vocab_size: file says %d, but 256 bytes + %d merges + %d special tokens = %d",
			f.VocabSize, len(f.Merges), len(f.SpecialTokens), t.VocabSize())
	}
	return t, nil
}

// Save writes t to path as JSON.
func Save(path string, t *BPE) error {
	b, err := Marshal(t)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Load reads a tokenizer file written by Save. Errors start with the path.
func Load(path string) (*BPE, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}
