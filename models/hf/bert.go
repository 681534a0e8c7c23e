package hf

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/loomtrain/loom/models/qformer"
)

// bertJSON is the part of a BertConfig (configuration_bert.py) that sizes
// the Q-Former. Pointers: absent fields take BertConfig's defaults.
type bertJSON struct {
	ModelType    string   `json:"model_type"`
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
}

func qfInt(p *int, def int) int {
	if p != nil {
		return *p
	}
	return def
}

func qfFloat(p *float64, def float64) float64 {
	if p != nil {
		return *p
	}
	return def
}

func qfStr(p *string, def string) string {
	if p != nil {
		return *p
	}
	return def
}

// BertConfig applies a BERT config.json (bert-base-uncased's layout) to
// base, as LAVIS init_Qformer builds the Q-Former from
// BertConfig.from_pretrained("bert-base-uncased"): hidden, layers, heads,
// intermediate, max positions, LayerNorm eps and hidden dropout come from
// BERT; Vocab is BERT's vocab_size + 1, the [DEC] token LAVIS's tokenizer
// adds as BOS (init_tokenizer, then Qformer.resize_token_embeddings:
// 30522 → 30523). base keeps what BERT does not say: Queries,
// CrossFreq, VisionWidth, EmbedDim, TextSide and Objectives.
//
// Only what Loom's Q-Former computes is accepted: hidden_act "gelu" (exact
// erf GELU) and absolute position embeddings.
func BertConfig(configJSON []byte, base qformer.Config) (qformer.Config, error) {
	var j bertJSON
	if err := json.Unmarshal(configJSON, &j); err != nil {
		return qformer.Config{}, fmt.Errorf("bert config: %w", err)
	}
	if j.ModelType != "" && j.ModelType != "bert" {
		return qformer.Config{}, fmt.Errorf("bert config: model_type %q, want \"bert\"", j.ModelType)
	}
	if act := qfStr(j.Act, "gelu"); act != "gelu" {
		return qformer.Config{}, fmt.Errorf("bert config: hidden_act %q: the Q-Former computes exact (erf) GELU, \"gelu\"", act)
	}
	if pt := qfStr(j.PosType, "absolute"); pt != "absolute" {
		return qformer.Config{}, fmt.Errorf("bert config: position_embedding_type %q: the Q-Former has absolute positions only", pt)
	}
	c := base
	c.Vocab = qfInt(j.Vocab, 30522) + 1
	c.Hidden = qfInt(j.Hidden, 768)
	c.Layers = qfInt(j.Layers, 12)
	c.Heads = qfInt(j.Heads, 12)
	c.Intermediate = qfInt(j.Intermediate, 3072)
	c.MaxPos = qfInt(j.MaxPos, 512)
	c.Eps = float32(qfFloat(j.Eps, 1e-12))
	c.Dropout = float32(qfFloat(j.Dropout, 0.1))
	if err := c.Validate(); err != nil {
		return qformer.Config{}, fmt.Errorf("bert config: %w", err)
	}
	return c, nil
}

// bertName returns a BERT checkpoint's name for s under "bert." and its
// alternatives: the unprefixed key (a BertModel's own file) and, for a
// LayerNorm, the old gamma/beta spelling of both.
func bertName(s string, prefixed bool) (string, []string) {
	names := []string{s}
	if b, ok := strings.CutSuffix(s, ".LayerNorm.weight"); ok {
		names = append(names, b+".LayerNorm.gamma")
	} else if b, ok := strings.CutSuffix(s, ".LayerNorm.bias"); ok {
		names = append(names, b+".LayerNorm.beta")
	}
	if !prefixed {
		return names[0], names[1:]
	}
	out := make([]string, 0, 2*len(names))
	for _, n := range names {
		out = append(out, "bert."+n)
	}
	out = append(out, names...)
	return out[0], out[1:]
}

// BertQFormerMapping maps a BERT checkpoint (BertModel, BertForMaskedLM or
// BertForPreTraining: keys with or without "bert.", LayerNorm weight/bias
// or gamma/beta) onto the Q-Former qformer.New(p, rng, "qformer", c)
// builds under loomPrefix ("qformer."), as LAVIS init_Qformer's
// BertLMHeadModel.from_pretrained does and Blip2Qformer.__init__
// completes:
//
//   - embeddings.{word_embeddings, position_embeddings} (TextSide) and
//     embeddings.LayerNorm; the word embeddings' extra [DEC] row keeps its
//     N(0, 0.02) initialisation (PadRows), as resize_token_embeddings
//     initialises it;
//   - every layer's attention.self.{query,key,value} → attention.*, and
//     attention.output.{dense,LayerNorm};
//   - intermediate/output (BERT's FFN) into both the text FFN (TextSide)
//     and intermediate_query/output_query: Blip2Qformer copies each *_query
//     parameter from its namesake after loading;
//   - with Objectives, the MLM head cls.predictions.{transform.dense,
//     transform.LayerNorm, bias} (bias padded by the [DEC] entry, which
//     keeps Loom's zero as transformers pads it); the decoder weight is
//     tied to the word embeddings, so cls.predictions.decoder.* is read by
//     nobody.
//
// Not read (Ignore): token_type_embeddings (LAVIS's BertEmbeddings has
// none, so from_pretrained drops BERT's; a Q-Former's embedding is word +
// position only), the pooler (BertLMHeadModel builds BertModel without
// one), the NSP head cls.seq_relationship and the position_ids buffer;
// without TextSide the word/position embeddings and text FFN, without
// Objectives the MLM head (what LAVIS's stage-2 models delete).
//
// Scope is the Q-Former, so Plan.RandomInit lists what stays at its fresh
// initialisation: query_tokens (N(0, 0.02)), every crossattention.*, the
// [DEC] rows, and the stage-1 heads vision_proj, text_proj, itm_head and
// temp. hfPrefix is prepended to every checkpoint name (a BERT inside a
// larger file; usually "").
func BertQFormerMapping(c qformer.Config, hfPrefix, loomPrefix string) Mapping {
	L := loomPrefix
	m := Mapping{Arch: "BertForMaskedLM→Q-Former", Scope: qformerScope(loomPrefix)}
	add := func(bert string, loom []string, e Entry) {
		// The MLM head is not under "bert." in BertForMaskedLM files.
		e.HF, e.Alt = bertName(bert, !strings.HasPrefix(bert, "cls."))
		e.Loom = loom
		m.Entries = append(m.Entries, e)
	}
	pair := func(bert, loom string) {
		for _, s := range []string{".weight", ".bias"} {
			add(bert+s, []string{L + loom + s}, Entry{})
		}
	}
	if c.TextSide {
		add("embeddings.word_embeddings.weight", []string{L + "embeddings.word_embeddings.weight"}, Entry{PadRows: true})
		add("embeddings.position_embeddings.weight", []string{L + "embeddings.position_embeddings.weight"}, Entry{})
	} else {
		m.Ignore = append(m.Ignore, "bert.embeddings.word_embeddings", "embeddings.word_embeddings",
			"bert.embeddings.position_embeddings", "embeddings.position_embeddings")
	}
	pair("embeddings.LayerNorm", "embeddings.LayerNorm")
	for i := 0; i < c.Layers; i++ {
		b := fmt.Sprintf("encoder.layer.%d.", i)
		l := fmt.Sprintf("layer.%d.", i)
		for _, s := range []string{"query", "key", "value"} {
			pair(b+"attention.self."+s, l+"attention."+s)
		}
		pair(b+"attention.output.dense", l+"attention.output.dense")
		pair(b+"attention.output.LayerNorm", l+"attention.output.LayerNorm")
		for _, f := range []struct{ bert, text, query string }{
			{"intermediate.dense", "intermediate.dense", "intermediate_query.dense"},
			{"output.dense", "output.dense", "output_query.dense"},
			{"output.LayerNorm", "output.LayerNorm", "output_query.LayerNorm"},
		} {
			for _, s := range []string{".weight", ".bias"} {
				loom := []string{L + l + f.query + s}
				if c.TextSide {
					loom = []string{L + l + f.text + s, L + l + f.query + s}
				}
				add(b+f.bert+s, loom, Entry{})
			}
		}
	}
	if c.Objectives {
		pair("cls.predictions.transform.dense", "cls.predictions.transform.dense")
		pair("cls.predictions.transform.LayerNorm", "cls.predictions.transform.LayerNorm")
		add("cls.predictions.bias", []string{L + "cls.predictions.bias"}, Entry{PadRows: true})
		m.Ignore = append(m.Ignore, "cls.predictions.decoder")
	} else {
		m.Ignore = append(m.Ignore, "cls.predictions")
	}
	m.Ignore = append(m.Ignore,
		"bert.embeddings.token_type_embeddings", "embeddings.token_type_embeddings",
		"bert.embeddings.position_ids", "embeddings.position_ids",
		"bert.pooler", "pooler", "cls.seq_relationship")
	return m.Prefixed(hfPrefix)
}
