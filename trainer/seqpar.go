package trainer

import (
	"context"
	"fmt"
	"time"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/nn"
)

// seqParallel runs LWM's decoder with sequence parallelism: every rank
// holds Total/World rows of one packed sequence (zigzag layout, so causal
// work is balanced) and attention runs as ring attention over the ranks
// (collective.RingAttentionForward/Backward; LWM trains its long stages
// with RingAttention, research/recipes.md §5 and collectives.md §5).
//
// kernels.Tape has no custom-op hook, so the decoder is cut at every
// attention: each layer is a tape before the attention (norm, q/k/v
// projections, RoPE) and a tape after it (output projection, residual,
// MLP), joined by leaf tensors; backward walks the layers in reverse,
// seeding each tape with BackwardFrom and passing dq, dk, dv from the ring
// backward in between. The result is the gradient of the same loss
// models.LWM computes (TestSeqParallelMatchesModel checks it).
type seqParallel struct {
	comm   *collective.Comm
	p      *nn.Params
	cfg    models.Config
	layout collective.Layout
	// wait accumulates the ring-attention time not spent in the kernels
	// (passing K/V blocks and waiting for peers), for Progress.CommWait.
	wait time.Duration
}

// spRow is one packed row as every rank sees it (whole).
type spRow struct {
	Tokens []int32
	Vision []bool // nil: all text
	Loss   []bool
	Seg    []int32 // nil: one document
}

// localRows returns the global row indices rank holds.
func localRows(layout collective.Layout, total, world, rank int) []int {
	var out []int
	if layout == collective.Contiguous {
		n := total / world
		for i := rank * n; i < (rank+1)*n; i++ {
			out = append(out, i)
		}
		return out
	}
	c := total / (2 * world)
	for _, chunk := range []int{rank, 2*world - 1 - rank} {
		for i := chunk * c; i < (chunk+1)*c; i++ {
			out = append(out, i)
		}
	}
	return out
}

// padRow pads r to a multiple of m with pad tokens in their own segment,
// trained on nothing.
func padRow(r spRow, m int, pad int32) spRow {
	n := len(r.Tokens)
	want := (n + m - 1) / m * m
	if r.Seg == nil {
		r.Seg = make([]int32, n)
		for i := range r.Seg {
			r.Seg[i] = 1
		}
	}
	padSeg := int32(-1)
	for i := n; i < want; i++ {
		r.Tokens = append(r.Tokens, pad)
		r.Loss = append(r.Loss, false)
		r.Seg = append(r.Seg, padSeg)
		if r.Vision != nil {
			r.Vision = append(r.Vision, false)
		}
	}
	return r
}

func (s *seqParallel) param(name string) *kernels.Tensor { return s.p.Get("llm." + name) }

type spLayer struct {
	pre, post       *kernels.Tape
	xLeaf, rLeaf    *kernels.Tensor
	oLeaf           *kernels.Tensor
	qkv, out        *kernels.Tensor
	q, k, v, o, lse []float32
}

// step runs one row forward and backward on this rank. The loss is
// wText·Σ CE over the row's text targets plus wVision·Σ CE over its vision
// targets (targets as models' packing rule: the next token, if trained and
// in the same segment); parameter gradients accumulate. It returns this
// rank's part of the loss and the number of rows it processed.
func (s *seqParallel) step(ctx context.Context, row spRow, wText, wVision float64) (float64, int, error) {
	world, rank := s.comm.World(), s.comm.Rank()
	total := len(row.Tokens)
	if total%(2*world) != 0 {
		return 0, 0, fmt.Errorf("sequence parallel: row of %d tokens is not a multiple of 2×%d ranks", total, world)
	}
	c := s.cfg.LLM
	heads, hd := c.Heads, c.Hidden/c.Heads
	rows := localRows(s.layout, total, world, rank)
	n := len(rows)
	// Positions restart per segment (models' packing); targets follow the
	// next token of the same segment.
	pos := make([]int32, total)
	for i := 1; i < total; i++ {
		if row.Seg[i] == row.Seg[i-1] {
			pos[i] = pos[i-1] + 1
		}
	}
	vis := func(i int) bool { return row.Vision != nil && row.Vision[i] }
	var ids, vids []int32
	var mt, mv []float32
	var lpos, lseg []int32
	var tIdx, vIdx, tTgt, vTgt []int32
	for li, g := range rows {
		lpos = append(lpos, pos[g])
		lseg = append(lseg, row.Seg[g])
		if vis(g) {
			ids, vids, mt, mv = append(ids, 0), append(vids, row.Tokens[g]), append(mt, 0), append(mv, 1)
		} else {
			ids, vids, mt, mv = append(ids, row.Tokens[g]), append(vids, 0), append(mt, 1), append(mv, 0)
		}
		if g+1 < total && row.Loss[g+1] && row.Seg[g+1] == row.Seg[g] {
			if vis(g + 1) {
				vIdx, vTgt = append(vIdx, int32(li)), append(vTgt, row.Tokens[g+1])
			} else {
				tIdx, tTgt = append(tIdx, int32(li)), append(tTgt, row.Tokens[g+1])
			}
		}
	}
	h := c.Hidden
	eps := c.Eps
	if eps == 0 {
		eps = 1e-6
	}
	// Embeddings: text ids from embed_tokens, vision ids from
	// vision_embed_tokens (LWM vision_llama.py: vision_mask selects).
	emb := kernels.NewTape()
	x := emb.Mul(emb.Embedding(s.param("model.embed_tokens.weight"), ids), kernels.New(mt, n, 1))
	if vte := s.param("model.vision_embed_tokens.weight"); vte != nil {
		x = emb.Add(x, emb.Mul(emb.Embedding(vte, vids), kernels.New(mv, n, 1)))
	}
	x0 := emb.Reshape(x, 1, n, h)
	leaf := func(t *kernels.Tensor) *kernels.Tensor {
		l := kernels.NewParam("", t.Shape...)
		copy(l.Data, t.Data)
		return l
	}
	rope := kernels.RoPEConfig{Theta: c.Theta, Pos: lpos}
	var stats collective.RingAttnStats
	cfg := collective.RingAttnConfig{Total: total, Heads: heads, HeadDim: hd, Causal: true, Layout: s.layout, Seg: lseg, Stats: &stats}
	account := func() { s.wait += stats.Wall - stats.Compute }
	var layers []*spLayer
	cur := x0
	for l := 0; l < c.Layers; l++ {
		pre := func(name string) string { return fmt.Sprintf("model.layers.%d.%s", l, name) }
		L := &spLayer{pre: kernels.NewTape(), post: kernels.NewTape()}
		L.xLeaf = leaf(cur)
		tp := L.pre
		hn := tp.RMSNorm(L.xLeaf, s.param(pre("input_layernorm.weight")), eps)
		proj := func(w string) *kernels.Tensor {
			return tp.Reshape(tp.Linear(hn, s.param(pre("self_attn."+w+".weight")), s.param(pre("self_attn."+w+".bias"))), 1, n, heads, hd)
		}
		q, k, v := tp.RoPE(proj("q_proj"), rope), tp.RoPE(proj("k_proj"), rope), proj("v_proj")
		L.qkv = tp.Concat(0, q, k, v)
		L.q, L.k, L.v = q.Data, k.Data, v.Data
		L.o, L.lse = make([]float32, n*heads*hd), make([]float32, n*heads)
		if err := s.comm.RingAttentionForward(ctx, cfg, L.q, L.k, L.v, L.o, L.lse); err != nil {
			return 0, 0, fmt.Errorf("sequence parallel: layer %d: %w", l, err)
		}
		account()
		tp = L.post
		L.oLeaf = kernels.NewParam("", 1, n, h)
		copy(L.oLeaf.Data, L.o)
		L.rLeaf = leaf(cur)
		x1 := tp.Add(L.rLeaf, tp.Linear(L.oLeaf, s.param(pre("self_attn.o_proj.weight")), s.param(pre("self_attn.o_proj.bias"))))
		h2 := tp.RMSNorm(x1, s.param(pre("post_attention_layernorm.weight")), eps)
		mlp := tp.Linear(tp.SwiGLU(tp.Linear(h2, s.param(pre("mlp.gate_proj.weight")), nil), tp.Linear(h2, s.param(pre("mlp.up_proj.weight")), nil)),
			s.param(pre("mlp.down_proj.weight")), nil)
		L.out = tp.Add(x1, mlp)
		cur = L.out
		layers = append(layers, L)
	}
	fin := kernels.NewTape()
	hLeaf := leaf(cur)
	hn := fin.Reshape(fin.RMSNorm(hLeaf, s.param("model.norm.weight"), eps), n, h)
	var loss *kernels.Tensor
	add := func(t *kernels.Tensor) {
		if loss == nil {
			loss = t
		} else {
			loss = fin.Add(loss, t)
		}
	}
	if len(tIdx) > 0 {
		head := s.param("lm_head.weight")
		if head == nil {
			head = s.param("model.embed_tokens.weight")
		}
		lg := fin.Linear(fin.IndexSelect(hn, 0, tIdx), head, nil)
		add(fin.Scale(fin.CrossEntropy(lg, tTgt, kernels.CEOptions{Sum: true}), float32(wText)))
	}
	if len(vIdx) > 0 {
		lg := fin.Linear(fin.IndexSelect(hn, 0, vIdx), s.param("vision_head.weight"), nil)
		add(fin.Scale(fin.CrossEntropy(lg, vTgt, kernels.CEOptions{Sum: true}), float32(wVision)))
	}
	var part float64
	if loss != nil {
		part = float64(loss.Item())
		fin.Backward(loss)
	} else {
		fin.Reset()
	}
	g := hLeaf.Grad
	if g == nil {
		g = make([]float32, n*h)
	}
	for l := len(layers) - 1; l >= 0; l-- {
		L := layers[l]
		L.post.BackwardFrom(L.out, g)
		do := L.oLeaf.Grad
		if do == nil {
			do = make([]float32, n*h)
		}
		dqkv := make([]float32, 3*n*heads*hd)
		m := n * heads * hd
		if err := s.comm.RingAttentionBackward(ctx, cfg, L.q, L.k, L.v, L.o, L.lse, do, dqkv[:m], dqkv[m:2*m], dqkv[2*m:]); err != nil {
			return 0, 0, fmt.Errorf("sequence parallel: layer %d backward: %w", l, err)
		}
		account()
		L.pre.BackwardFrom(L.qkv, dqkv)
		g = make([]float32, n*h)
		for _, t := range []*kernels.Tensor{L.rLeaf, L.xLeaf} {
			for i, v := range t.Grad {
				g[i] += v
			}
		}
	}
	emb.BackwardFrom(x0, g)
	return part, n, nil
}
