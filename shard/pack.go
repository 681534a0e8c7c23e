package shard

import "fmt"

// PackInput is one variable-length sample for packing: its tokens and, per
// token, whether the token is a loss target (nil: every token is).
type PackInput struct {
	Tokens []int32
	Loss   []bool
}

// Packed is one fixed-length sequence made of several samples (segments).
//
// SegmentIDs numbers the segments 1, 2, ... (0 marks padding) so that the
// attention mask lets a token see only its own segment; Positions restart at
// 0 in each segment. LossWeights follow LWM's masked sequence packing: a
// segment with m loss tokens gives each of them weight 1/m, so that the
// training loss
//
//	sum(LossWeights * token_loss) / (number of segments with m > 0)
//
// summed over a global batch equals the mean over samples of each sample's
// mean token loss, exactly what the samples would give unpacked; without
// the weights, long samples would dominate and short ones count for little.
type Packed struct {
	Tokens      []int32
	SegmentIDs  []int32
	Positions   []int32
	LossWeights []float32
	Segments    int // segments with at least one loss token
}

// Pack packs samples in order into sequences of length tokens, greedily:
// a sample that does not fit in the current sequence starts a new one, and a
// sample longer than length is truncated to length. The result depends only
// on the inputs, so packing is as deterministic as the sample order.
func Pack(samples []PackInput, length int, pad int32) ([]Packed, error) {
	if length <= 0 {
		return nil, fmt.Errorf("pack length %d", length)
	}
	var out []Packed
	var cur *Packed
	used := 0
	newSeq := func() {
		out = append(out, Packed{
			Tokens: make([]int32, length), SegmentIDs: make([]int32, length),
			Positions: make([]int32, length), LossWeights: make([]float32, length),
		})
		cur = &out[len(out)-1]
		for i := range cur.Tokens {
			cur.Tokens[i] = pad
		}
		used = 0
	}
	seg := int32(0)
	for i, s := range samples {
		if s.Loss != nil && len(s.Loss) != len(s.Tokens) {
			return nil, fmt.Errorf("sample %d: %d loss flags for %d tokens", i, len(s.Loss), len(s.Tokens))
		}
		n := min(len(s.Tokens), length)
		if n == 0 {
			continue
		}
		if cur == nil || used+n > length {
			newSeq()
			seg = 0
		}
		seg++
		m := 0
		for t := 0; t < n; t++ {
			if s.Loss == nil || s.Loss[t] {
				m++
			}
		}
		for t := 0; t < n; t++ {
			p := used + t
			cur.Tokens[p] = s.Tokens[t]
			cur.SegmentIDs[p] = seg
			cur.Positions[p] = int32(t)
			if m > 0 && (s.Loss == nil || s.Loss[t]) {
				cur.LossWeights[p] = 1 / float32(m)
			}
		}
		if m > 0 {
			cur.Segments++
		}
		used += n
	}
	return out, nil
}

// ConversationLoss returns per-token loss flags for a conversation whose
// turns were tokenized to turnLens[i] tokens each: a token is a loss target
// when its turn has Loss set.
func ConversationLoss(turns []Turn, turnLens []int) ([]bool, error) {
	if len(turns) != len(turnLens) {
		return nil, fmt.Errorf("%d turns, %d token counts", len(turns), len(turnLens))
	}
	var out []bool
	for i, t := range turns {
		for k := 0; k < turnLens[i]; k++ {
			out = append(out, t.Loss)
		}
	}
	return out, nil
}
