package hf

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/loomtrain/loom/models/qformer"
)

// blip2QFormerJSON is configuration_blip_2.py's Blip2QFormerConfig, the
// "qformer_config" of a Blip2Config.
type blip2QFormerJSON struct {
	Vocab        *int     `json:"vocab_size"`
	Hidden       *int     `json:"hidden_size"`
	Layers       *int     `json:"num_hidden_layers"`
	Heads        *int     `json:"num_attention_heads"`
	Intermediate *int     `json:"intermediate_size"`
	Act          *string  `json:"hidden_act"`
	Dropout      *float64 `json:"hidden_dropout_prob"`
	MaxPos       *int     `json:"max_position_embeddings"`
	Eps          *float64 `json:"layer_norm_eps"`
	PosType      *string  `json:"position_embedding_type"`
	CrossFreq    *int     `json:"cross_attention_frequency"`
	EncoderWidth *int     `json:"encoder_hidden_size"`
	TextInput    bool     `json:"use_qformer_text_input"`
}

// blip2JSON is the part of a Blip2Config the Q-Former needs.
type blip2JSON struct {
	ModelType string           `json:"model_type"`
	Queries   *int             `json:"num_query_tokens"`
	QFormer   blip2QFormerJSON `json:"qformer_config"`
	Vision    struct {
		Hidden *int `json:"hidden_size"`
	} `json:"vision_config"`
	Text json.RawMessage `json:"text_config"`
}

// Blip2QFormerConfig reads a Blip2ForConditionalGeneration config.json
// (configuration_blip_2.py; absent fields take Blip2QFormerConfig's
// defaults, those of BERT-base) into the Q-Former's sizes: hidden, layers,
// heads, intermediate, max positions, LayerNorm eps, hidden dropout,
// vocab_size (as is: the [DEC] row is already counted where a checkpoint
// has word embeddings), cross_attention_frequency, num_query_tokens, and
// VisionWidth = vision_config.hidden_size (Blip2Config overwrites
// encoder_hidden_size with it; 1408 by default). base keeps EmbedDim,
// TextSide and Objectives: the text FFN is in the checkpoint only with
// use_qformer_text_input, which Blip2ForConditionalGeneration leaves off.
func Blip2QFormerConfig(configJSON []byte, base qformer.Config) (qformer.Config, error) {
	var j blip2JSON
	if err := json.Unmarshal(configJSON, &j); err != nil {
		return qformer.Config{}, fmt.Errorf("blip-2 config: %w", err)
	}
	if j.ModelType != "" && j.ModelType != "blip-2" {
		return qformer.Config{}, fmt.Errorf("blip-2 config: model_type %q, want \"blip-2\"", j.ModelType)
	}
	q := j.QFormer
	if act := qfStr(q.Act, "gelu"); act != "gelu" {
		return qformer.Config{}, fmt.Errorf("blip-2 config: qformer_config.hidden_act %q: the Q-Former computes exact (erf) GELU, \"gelu\"", act)
	}
	if pt := qfStr(q.PosType, "absolute"); pt != "absolute" {
		return qformer.Config{}, fmt.Errorf("blip-2 config: qformer_config.position_embedding_type %q: the Q-Former has absolute positions only", pt)
	}
	c := base
	c.Vocab = qfInt(q.Vocab, 30522)
	c.Hidden = qfInt(q.Hidden, 768)
	c.Layers = qfInt(q.Layers, 12)
	c.Heads = qfInt(q.Heads, 12)
	c.Intermediate = qfInt(q.Intermediate, 3072)
	c.MaxPos = qfInt(q.MaxPos, 512)
	c.Eps = float32(qfFloat(q.Eps, 1e-12))
	c.Dropout = float32(qfFloat(q.Dropout, 0.1))
	c.CrossFreq = qfInt(q.CrossFreq, 2)
	c.Queries = qfInt(j.Queries, 32)
	c.VisionWidth = qfInt(j.Vision.Hidden, qfInt(q.EncoderWidth, 1408))
	if err := c.Validate(); err != nil {
		return qformer.Config{}, fmt.Errorf("blip-2 config: %w", err)
	}
	return c, nil
}

// Blip2QFormerMapping maps the Q-Former of a Blip2ForConditionalGeneration
// checkpoint (modeling_blip_2.py; HF names relative to the whole model,
// after hfPrefix) onto the Q-Former qformer.New(p, rng, "qformer", c)
// builds under loomPrefix ("qformer."):
//
//   - query_tokens [1, Queries, Hidden] → query_tokens;
//   - qformer.layernorm → embeddings.LayerNorm (LAVIS's
//     Qformer.bert.embeddings.LayerNorm, which HF applies to the queries);
//   - qformer.encoder.layer.N.attention.attention.{query,key,value} →
//     layer.N.attention.* (LAVIS's attention.self, renamed by HF), and
//     attention.output.{dense,LayerNorm};
//   - crossattention.attention.* and crossattention.output.* on the layers
//     with N % CrossFreq == 0;
//   - intermediate_query / output_query;
//   - with TextSide, intermediate / output when the checkpoint has them
//     (saved with use_qformer_text_input; otherwise the text FFN keeps its
//     initialisation and Plan.RandomInit lists it); without TextSide they
//     are ignored if present (LAVIS's stage 2 deletes them).
//
// Blip2ForConditionalGeneration has no Q-Former word or position
// embeddings and no stage-1 heads: with TextSide or Objectives those stay
// at their initialisation and Plan.RandomInit lists them (Scope is the
// Q-Former).
func Blip2QFormerMapping(c qformer.Config, hfPrefix, loomPrefix string) Mapping {
	L := loomPrefix
	m := Mapping{Arch: "Blip2QFormerModel", Scope: qformerScope(loomPrefix)}
	pair := func(hf, loom string) {
		for _, s := range []string{".weight", ".bias"} {
			m.Entries = append(m.Entries, Entry{HF: hf + s, Loom: []string{L + loom + s}})
		}
	}
	m.Entries = append(m.Entries, Entry{HF: "query_tokens", Loom: []string{L + "query_tokens"}})
	pair("qformer.layernorm", "embeddings.LayerNorm")
	for i := 0; i < c.Layers; i++ {
		h := fmt.Sprintf("qformer.encoder.layer.%d.", i)
		l := fmt.Sprintf("layer.%d.", i)
		blocks := []string{"attention"}
		if c.HasCross(i) {
			blocks = append(blocks, "crossattention")
		}
		for _, b := range blocks {
			for _, s := range []string{"query", "key", "value"} {
				pair(h+b+".attention."+s, l+b+"."+s)
			}
			pair(h+b+".output.dense", l+b+".output.dense")
			pair(h+b+".output.LayerNorm", l+b+".output.LayerNorm")
		}
		ffns := []string{"_query"}
		if c.TextSide {
			ffns = append(ffns, "")
		}
		for _, f := range ffns {
			from := len(m.Entries)
			pair(h+"intermediate"+f+".dense", l+"intermediate"+f+".dense")
			pair(h+"output"+f+".dense", l+"output"+f+".dense")
			pair(h+"output"+f+".LayerNorm", l+"output"+f+".LayerNorm")
			for k := from; f == "" && k < len(m.Entries); k++ {
				m.Entries[k].Optional = true
			}
		}
	}
	if !c.TextSide {
		m.Ignore = append(m.Ignore, "qformer.encoder.layer.*.intermediate.**", "qformer.encoder.layer.*.output.**")
	}
	return m.Prefixed(hfPrefix)
}

// qformerScope is the Scope of a Q-Former under loomPrefix ("qformer." →
// "qformer", its whole subtree).
func qformerScope(loomPrefix string) []string {
	return []string{strings.TrimSuffix(loomPrefix, ".")}
}
