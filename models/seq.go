package models

import (
	"fmt"

	"github.com/loomtrain/loom/kernels"
)

// piece is one position of a language-model input before embedding: a text
// token, a vision token (LWM) or one row of projected image features.
type piece struct {
	tok    int32 // token id (text, or vision id when vision is set)
	feat   int   // row of the image-feature matrix, or -1
	vision bool  // tok is a vision id (LWM)
	loss   bool  // predicting this position is trained
	seg    int32 // packed segment
}

// packed is a batch of piece rows laid out for the LLM: right-padded to T.
type packed struct {
	B, T      int
	textIDs   []int32 // text tokens in row order
	visIDs    []int32 // vision tokens in row order
	gather    []int32 // per position: index into [text emb; vision emb; features; zero row]
	target    []int32 // per position: the id it predicts, or -1
	targetVis []bool  // per position: the target is a vision id
	seg, pos  []int32
	lens      []int
	hasSeg    bool
}

// pack lays out rows. nFeat is the number of image-feature rows the rows
// refer to (each must be used once). Position t is trained to predict piece
// t+1 when that piece has loss set and is a token (never an image feature).
func pack(rows [][]piece, nFeat int) (*packed, error) {
	p := &packed{B: len(rows)}
	for _, r := range rows {
		p.T = max(p.T, len(r))
	}
	if p.T == 0 {
		return nil, fmt.Errorf("batch has no tokens")
	}
	var nText, nVis int
	for _, r := range rows {
		for _, pc := range r {
			switch {
			case pc.feat >= 0:
			case pc.vision:
				nVis++
			default:
				nText++
			}
		}
	}
	used := make([]bool, nFeat)
	zero := int32(nText + nVis + nFeat)
	n := p.B * p.T
	p.gather = make([]int32, n)
	p.target = make([]int32, n)
	p.targetVis = make([]bool, n)
	p.seg = make([]int32, n)
	p.pos = make([]int32, n)
	p.lens = make([]int, p.B)
	for b, r := range rows {
		p.lens[b] = len(r)
		var pos int32
		for t := 0; t < p.T; t++ {
			i := b*p.T + t
			p.target[i] = -1
			if t >= len(r) {
				p.gather[i] = zero
				p.seg[i] = -1
				continue
			}
			pc := r[t]
			if t > 0 && pc.seg != r[t-1].seg {
				pos = 0
				p.hasSeg = true
			}
			p.seg[i], p.pos[i] = pc.seg, pos
			pos++
			switch {
			case pc.feat >= 0:
				if pc.feat >= nFeat || used[pc.feat] {
					return nil, fmt.Errorf("row %d position %d: image feature %d used twice or out of range (%d rows)", b, t, pc.feat, nFeat)
				}
				used[pc.feat] = true
				p.gather[i] = int32(nText + nVis + pc.feat)
			case pc.vision:
				p.gather[i] = int32(nText + len(p.visIDs))
				p.visIDs = append(p.visIDs, pc.tok)
			default:
				p.gather[i] = int32(len(p.textIDs))
				p.textIDs = append(p.textIDs, pc.tok)
			}
			if t+1 < len(r) && r[t+1].loss && r[t+1].feat < 0 && r[t+1].seg == pc.seg {
				p.target[i] = r[t+1].tok
				p.targetVis[i] = r[t+1].vision
			}
		}
	}
	for i, u := range used {
		if !u {
			return nil, fmt.Errorf("image feature row %d is not placed in any sequence (more images than placeholders)", i)
		}
	}
	return p, nil
}

// embed builds the input embeddings [B, T, H] from the text table, an
// optional vision table (LWM) and image features [nFeat, H] (or nil): one
// IndexSelect over their concatenation, so gradients reach all three.
func (p *packed) embed(tp *kernels.Tape, text, vision, feats *kernels.Tensor, h int) *kernels.Tensor {
	var parts []*kernels.Tensor
	if len(p.textIDs) > 0 {
		parts = append(parts, tp.Embedding(text, p.textIDs))
	}
	if len(p.visIDs) > 0 {
		parts = append(parts, tp.Embedding(vision, p.visIDs))
	}
	if feats != nil {
		parts = append(parts, feats)
	}
	parts = append(parts, kernels.Zeros(1, h))
	all := parts[0]
	if len(parts) > 1 {
		all = tp.Concat(0, parts...)
	}
	return tp.Reshape(tp.IndexSelect(all, 0, p.gather), p.B, p.T, h)
}

// layoutSeg returns the segment ids for attention, or nil when every row is
// one segment.
func (p *packed) layoutSeg() []int32 {
	if !p.hasSeg {
		return nil
	}
	return p.seg
}

// rowsWhere returns the positions whose target exists and matches vis.
func (p *packed) rowsWhere(vis bool) (idx []int32, tgt []int32) {
	for i, t := range p.target {
		if t >= 0 && p.targetVis[i] == vis {
			idx = append(idx, int32(i))
			tgt = append(tgt, t)
		}
	}
	return idx, tgt
}
