package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenizerTrainEncodeDecode(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "c.txt")
	if err := os.WriteFile(in, []byte(strings.Repeat("the cat sat on the mat\n", 20)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "tok.json")
	if _, err := run(t, "tokenizer", "train", "--input", in, "--vocab-size", "280", "--out", out); err != nil {
		t.Fatalf("loom tokenizer train: %v", err)
	}
	ids, err := run(t, "tokenizer", "encode", "--tokenizer", out, "<image>", "the", "cat")
	if err != nil {
		t.Fatalf("loom tokenizer encode: %v", err)
	}
	text, err := run(t, append([]string{"tokenizer", "decode", "--tokenizer", out}, strings.Fields(ids)...)...)
	if err != nil {
		t.Fatalf("loom tokenizer decode %s: %v", ids, err)
	}
	if text != "<image> the cat\n" {
		t.Errorf("decode(encode(%q)) = %q", "<image> the cat", text)
	}
	// --format hf writes a Hugging Face tokenizer with the same ids.
	hfDir := filepath.Join(dir, "hf")
	if _, err := run(t, "tokenizer", "train", "--input", in, "--vocab-size", "280", "--format", "hf", "--out", hfDir); err != nil {
		t.Fatalf("loom tokenizer train --format hf: %v", err)
	}
	hfIDs, err := run(t, "tokenizer", "encode", "--tokenizer", filepath.Join(hfDir, "tokenizer.json"), "<image>", "the", "cat")
	if err != nil {
		t.Fatalf("loom tokenizer encode (hf): %v", err)
	}
	if hfIDs != ids {
		t.Errorf("the hf tokenizer's ids %q differ from the loom file's %q", hfIDs, ids)
	}
	if _, err := os.Stat(filepath.Join(hfDir, "tokenizer_config.json")); err != nil {
		t.Error(err)
	}
	if _, err := run(t, "tokenizer", "train", "--input", in, "--vocab-size", "10", "--out", out); err == nil || !strings.Contains(err.Error(), "--vocab-size") {
		t.Errorf("train --vocab-size 10: error %v, want one naming --vocab-size", err)
	}
}

func TestBenchTokenizer(t *testing.T) {
	out, err := run(t, "bench", "tokenizer", "--words", "500", "--merges", "20", "--json")
	if err != nil {
		t.Fatalf("loom bench tokenizer: %v", err)
	}
	if !strings.Contains(out, `"benchmark": "tokenizer-train"`) || !strings.Contains(out, `"merges": 20`) {
		t.Errorf("unexpected output:\n%s", out)
	}
}
