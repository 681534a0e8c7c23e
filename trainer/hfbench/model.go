// Package hfbench measures loading and exporting Hugging Face checkpoints
// through an object store (loom bench load): hf.Open + hf.Load of a
// generated LLaMA-shaped BF16 checkpoint against raw GETs of the same
// shard objects, and hf.Export against raw PUTs of the same bytes, with
// each pass's peak memory. It is benchmark code, not a production path.
package hfbench

import (
	"encoding/json"
	"fmt"

	"github.com/loomtrain/loom/models/hf"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
)

// Model is the shape of a LLaMA-like decoder, the tensors of a Hugging
// Face LlamaForCausalLM checkpoint (grouped-query attention, untied head).
type Model struct {
	Layers       int `json:"layers"`
	Hidden       int `json:"hidden"`
	Intermediate int `json:"intermediate"`
	KVHidden     int `json:"kv_hidden"` // k and v projection rows
	Vocab        int `json:"vocab"`
}

// TinyLlamaShapes are TinyLlama-1.1B's widths (22 layers of them make
// 2.2 GB of BF16).
var TinyLlamaShapes = Model{Hidden: 2048, Intermediate: 5632, KVHidden: 256, Vocab: 32000}

// LlamaLike returns TinyLlamaShapes with as many layers (at least one) as
// bring the BF16 checkpoint closest to bytes.
func LlamaLike(bytes int64) Model {
	m := TinyLlamaShapes
	m.Layers = 1
	fixed := 2 * m.numel(false) // BF16
	per := 2 * (m.numel(true) - m.numel(false))
	if l := int((bytes - fixed + per/2) / per); l > 1 {
		m.Layers = l
	}
	return m
}

// numel counts the elements of the embedding, head and final norm, plus
// one layer's when layer is set.
func (m Model) numel(layer bool) int64 {
	n := int64(2*m.Vocab*m.Hidden + m.Hidden)
	if layer {
		h, f, kv := int64(m.Hidden), int64(m.Intermediate), int64(m.KVHidden)
		n += 2*h*h + 2*kv*h + 3*f*h + 2*h
	}
	return n
}

// Tensor is one checkpoint tensor of the model.
type Tensor struct {
	Name  string
	Shape []int
}

// Tensors lists the model's tensors in Hugging Face names.
func (m Model) Tensors() []Tensor {
	h, f, kv := m.Hidden, m.Intermediate, m.KVHidden
	ts := []Tensor{{"model.embed_tokens.weight", []int{m.Vocab, h}}}
	for i := 0; i < m.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		ts = append(ts,
			Tensor{p + "input_layernorm.weight", []int{h}},
			Tensor{p + "self_attn.q_proj.weight", []int{h, h}},
			Tensor{p + "self_attn.k_proj.weight", []int{kv, h}},
			Tensor{p + "self_attn.v_proj.weight", []int{kv, h}},
			Tensor{p + "self_attn.o_proj.weight", []int{h, h}},
			Tensor{p + "post_attention_layernorm.weight", []int{h}},
			Tensor{p + "mlp.gate_proj.weight", []int{f, h}},
			Tensor{p + "mlp.up_proj.weight", []int{f, h}},
			Tensor{p + "mlp.down_proj.weight", []int{h, f}},
		)
	}
	return append(ts, Tensor{"model.norm.weight", []int{h}}, Tensor{"lm_head.weight", []int{m.Vocab, h}})
}

// Numel is the number of parameters.
func (m Model) Numel() int64 {
	var n int64
	for _, t := range m.Tensors() {
		k := int64(1)
		for _, d := range t.Shape {
			k *= int64(d)
		}
		n += k
	}
	return n
}

// Params returns a zero float32 parameter tree with the checkpoint's
// names and shapes (the pages are touched only when written).
func (m Model) Params() *nn.Params {
	p := nn.NewParams()
	for _, t := range m.Tensors() {
		p.Add(t.Name, t.Shape...)
	}
	return p
}

// Mapping maps every tensor onto the parameter of the same name, so the
// benchmark measures reading and converting, not a layout.
func (m Model) Mapping() hf.Mapping {
	mp := hf.Mapping{Arch: "LlamaLikeBench"}
	for _, t := range m.Tensors() {
		mp.Entries = append(mp.Entries, hf.Entry{HF: t.Name, Loom: []string{t.Name}})
	}
	return mp
}

// Config is a config.json for the model.
func (m Model) Config() []byte {
	b, _ := json.MarshalIndent(map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": m.Hidden, "intermediate_size": m.Intermediate, "num_hidden_layers": m.Layers,
		"num_attention_heads": m.Hidden / 64, "num_key_value_heads": m.KVHidden / 64, "vocab_size": m.Vocab,
		"torch_dtype": "bfloat16", "tie_word_embeddings": false,
	}, "", "  ")
	return b
}

// value is the generated value of element i of tensor ti.
func value(ti, i int) float32 {
	x := uint32(i)*2654435761 + uint32(ti)*40503
	return float32(x>>16)/65536 - 0.5
}

// Fill writes the generated values into p (tensors in Tensors order).
func (m Model) Fill(p *nn.Params) {
	for ti, t := range m.Tensors() {
		d := p.Get(t.Name).Data
		for i := range d {
			d[i] = value(ti, i)
		}
	}
}

// Check spot-checks a loaded tree: the first, middle and last element of
// every tensor must be the generated value rounded to BF16.
func (m Model) Check(p *nn.Params) error {
	for ti, t := range m.Tensors() {
		d := p.Get(t.Name).Data
		for _, i := range []int{0, len(d) / 2, len(d) - 1} {
			if want := bf16(value(ti, i)); d[i] != want {
				return fmt.Errorf("loaded %s[%d] = %v, generated %v", t.Name, i, d[i], want)
			}
		}
	}
	return nil
}

func bf16(v float32) float32 { return safetensors.FromBF16(safetensors.ToBF16(v)) }
