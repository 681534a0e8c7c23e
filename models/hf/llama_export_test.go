package hf

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/nn"
)

// TestLlamaExportRoundTrip: a loaded checkpoint exported as F32 (one file,
// and in shards with an index) and imported again gives bit-identical
// parameters and the same config; a tied model writes no lm_head.
func TestLlamaExportRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		read  func([]byte) (llm.Config, error)
		mapf  func(llm.Config, string, string) Mapping
		cfgJS func(llm.Config, ...map[string]any) ([]byte, error)
		shard int64
	}{
		{"llama_gqa", LlamaConfig, LlamaMapping, LlamaConfigJSON, 0},
		{"llama_headdim", LlamaConfig, LlamaMapping, LlamaConfigJSON, 20000},
		{"llama_qwen2", LlamaConfig, LlamaMapping, LlamaConfigJSON, 0},
		{"llama_yarn", LlamaConfig, LlamaMapping, LlamaConfigJSON, 0},
		{"llama_llama3", LlamaConfig, LlamaMapping, LlamaConfigJSON, 0},
		{"opt_preln", OPTConfig, OPTMapping, OPTConfigJSON, 0},
		{"opt_350m", OPTConfig, OPTMapping, OPTConfigJSON, 30000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, p, _ := loadDecoder(t, tc.name, tc.read, tc.mapf)
			cj, err := tc.cfgJS(m.Cfg)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			res, err := Export(context.Background(), Dir(dir), tc.mapf(m.Cfg, "", "llm."), p,
				ExportOptions{ShardBytes: tc.shard, Files: map[string][]byte{ConfigFile: cj}})
			if err != nil {
				t.Fatal(err)
			}
			if (tc.shard > 0) != (len(res.Shards) > 1) {
				t.Errorf("shard bound %d gave shards %v", tc.shard, res.Shards)
			}
			ck, err := Open(context.Background(), Dir(dir))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := ck.Info("lm_head.weight"); ok == m.Cfg.Tied {
				t.Errorf("tied=%v, but lm_head.weight written: %v", m.Cfg.Tied, ok)
			}
			cfg2, err := tc.read(ck.Config())
			if err != nil {
				t.Fatal(err)
			}
			if cfg2 != m.Cfg {
				t.Errorf("config after export: %+v\nbefore: %+v", cfg2, m.Cfg)
			}
			p2 := nn.NewParams()
			if _, err := llm.New(p2, nn.Rng(2), "llm.", cfg2); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(context.Background(), ck, tc.mapf(cfg2, "", "llm."), p2); err != nil {
				t.Fatal(err)
			}
			for _, w := range p.All() {
				if !slices.Equal(w.Data, p2.Get(w.Name).Data) {
					t.Errorf("%s differs after export and import", w.Name)
				}
			}
		})
	}
}

// writeCheckpoint exports p through m into a fresh directory with the
// given config.json.
func writeCheckpoint(t *testing.T, m Mapping, p *nn.Params, config []byte) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := Export(context.Background(), Dir(dir), m, p, ExportOptions{Files: map[string][]byte{ConfigFile: config}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLlamaLoadErrors: a missing tensor, an unexpected tensor, a wrong
// shape and a bad config field are refused with the file, the tensor or
// the field named.
func TestLlamaLoadErrors(t *testing.T) {
	cfg := llm.Config{Vocab: 20, Hidden: 8, Layers: 1, Heads: 2, KVHeads: 1, FFN: 12, MaxPos: 32, Eps: 1e-5, Theta: 10000}
	p := nn.NewParams()
	if _, err := llm.New(p, nn.Rng(3), "", cfg); err != nil {
		t.Fatal(err)
	}
	cj, err := LlamaConfigJSON(cfg)
	if err != nil {
		t.Fatal(err)
	}
	full := LlamaMapping(cfg, "", "")
	load := func(dir string, c llm.Config) error {
		ck, err := Open(context.Background(), Dir(dir))
		if err != nil {
			return err
		}
		p2 := nn.NewParams()
		if _, err := llm.New(p2, nn.Rng(4), "", c); err != nil {
			t.Fatal(err)
		}
		_, err = Load(context.Background(), ck, LlamaMapping(c, "", ""), p2)
		return err
	}
	check := func(what string, err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: loaded without error", what)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", what, err, w)
			}
		}
	}

	missing := full
	missing.Entries = slices.DeleteFunc(slices.Clone(full.Entries), func(e Entry) bool { return e.HF == "model.layers.0.mlp.up_proj.weight" })
	dir := writeCheckpoint(t, missing, p, cj)
	check("missing tensor", load(dir, cfg), dir, `missing tensor "model.layers.0.mlp.up_proj.weight"`)

	extra := full
	extra.Entries = append(slices.Clone(full.Entries), Entry{HF: "model.layers.0.mlp.extra.weight", Loom: []string{"model.norm.weight"}})
	dir = writeCheckpoint(t, extra, p, cj)
	check("unexpected tensor", load(dir, cfg), filepath.Join(dir, SingleFile), `unexpected tensor "model.layers.0.mlp.extra.weight"`)

	dir = writeCheckpoint(t, full, p, cj)
	wide := cfg
	wide.FFN = 16
	check("wrong shape", load(dir, wide), filepath.Join(dir, SingleFile), `"model.layers.0.mlp.gate_proj.weight"`, "[12 8]", "[16 8]")

	if err := load(dir, cfg); err != nil {
		t.Fatalf("the intact checkpoint: %v", err)
	}
	bad := strings.Replace(string(cj), `"num_key_value_heads": 1`, `"num_key_value_heads": 3`, 1)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	ck, err := Open(context.Background(), Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	_, err = LlamaConfig(ck.Config())
	check("bad config field", err, "config.json", "num_key_value_heads")
}

// TestLlamaVocabPadding: a Loom vocabulary larger than the checkpoint's
// (special tokens appended) loads the checkpoint's rows of embed_tokens
// and lm_head, reports the added rows as random, and gives the
// reference logits on the checkpoint's vocabulary.
func TestLlamaVocabPadding(t *testing.T) {
	for _, name := range []string{"llama_gqa", "llama_qwen2"} {
		ck, err := Open(context.Background(), Dir(filepath.Join("testdata", name)))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := LlamaConfig(ck.Config())
		if err != nil {
			t.Fatal(err)
		}
		orig := cfg.Vocab
		cfg.Vocab += 3
		p := nn.NewParams()
		m, err := llm.New(p, nn.Rng(1), "llm.", cfg)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := Load(context.Background(), ck, LlamaMapping(cfg, "", "llm."), p)
		if err != nil {
			t.Fatal(err)
		}
		want := 1
		if !cfg.Tied {
			want = 2
		}
		if len(plan.RandomInit) != want || !strings.Contains(plan.RandomInit[0], "rows") {
			t.Errorf("%s: RandomInit %v, want the padded rows of %d matrices", name, plan.RandomInit, want)
		}
		ref := readDecoderRef(t, name)
		c := ref.Cases[0]
		got := m.Logits(nil, m.Forward(nil, m.EmbedTokens(nil, c.Tokens, 1, len(c.Tokens)), llm.Layout{Pos: c.Pos}))
		for i, row := range c.Logits {
			for j := 0; j < orig; j++ {
				if d := float64(got.Data[i*cfg.Vocab+j]) - row[j]; d > logitTol || d < -logitTol {
					t.Fatalf("%s padded to %d: token %d logit %d off by %.3g", name, cfg.Vocab, i, j, d)
				}
			}
		}
	}
}

func readDecoderRef(t *testing.T, name string) refLogits {
	t.Helper()
	var ref refLogits
	b, err := os.ReadFile(filepath.Join("testdata", name, "reference_logits.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}
