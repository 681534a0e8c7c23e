package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// hfExpected is testdata/hf/expected.json, written by gen_tokenizer_json.py.
type hfExpected map[string]struct {
	Reference string `json:"reference"`
	Cases     []struct {
		Text    string `json:"text"`
		IDs     []int  `json:"ids"`
		Decoded string `json:"decoded"`
	} `json:"cases"`
	DecodeCases []struct {
		IDs  []int  `json:"ids"`
		Text string `json:"text"`
	} `json:"decode_cases"`
}

// TestHFMatchesReference checks the tokenizer.json fixtures against the ids
// and decodings of their references (sentencepiece for the LLaMA-style
// files, a port of GPT-2's encoder.py for the byte-level ones; see
// gen_tokenizer_json.py).
func TestHFMatchesReference(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "hf", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e hfExpected
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	for name, m := range e {
		t.Run(name, func(t *testing.T) {
			tok, err := OpenDir(filepath.Join("testdata", "hf", name))
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range m.Cases {
				got := tok.Encode(c.Text)
				if !equalIDs(got, c.IDs) {
					t.Errorf("Encode(%q)\n got %v\nwant %v (%s)", c.Text, got, c.IDs, m.Reference)
					continue
				}
				dec, err := tok.Decode(got)
				if err != nil {
					t.Errorf("Decode(Encode(%q)): %v", c.Text, err)
				} else if dec != c.Decoded {
					t.Errorf("Decode(Encode(%q)) = %q, want %q", c.Text, dec, c.Decoded)
				}
			}
			for _, c := range m.DecodeCases {
				got, err := tok.Decode(c.IDs)
				if err != nil {
					t.Errorf("Decode(%v): %v", c.IDs, err)
				} else if got != c.Text {
					t.Errorf("Decode(%v) = %q, want %q", c.IDs, got, c.Text)
				}
			}
		})
	}
}
