package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// submit --dry-run lists what an init block loads, tensor by tensor, and
// what stays random, without a coordinator (no source names a job).
func TestSubmitDryRunInitPlan(t *testing.T) {
	llama, err := filepath.Abs("../../models/hf/testdata/llama_gqa")
	if err != nil {
		t.Fatal(err)
	}
	clip, _ := filepath.Abs("../../models/hf/testdata/clip")
	man := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(man, []byte(`name: vila-hf
recipe: vila
model: {size: tiny}
init:
  llm: {uri: "file://`+llama+`"}
  vision: {uri: "file://`+clip+`"}
datasets: [{name: d, uri: "s3://bkt/d"}]
global_batch: 8
stages: [{name: align, steps: 10, overrides: {image_size: 16}}]
`), 0o644)
	c := newSubmitCmd()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs([]string{"--dry-run", "--coordinator", "127.0.0.1:1", man})
	if err := c.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"init.llm: file://" + llama + " (LlamaForCausalLM): 21 tensors",
		"model.layers.0.self_attn.k_proj.weight",
		"[16 32]          BF16",
		"-> llm.model.layers.0.self_attn.k_proj.weight",
		"init.vision: file://" + clip + " (CLIPVisionModel)",
		"llm.model.embed_tokens.weight rows 64..",
		"  mm_projector.",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, s)
		}
	}
}
