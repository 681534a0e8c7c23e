package models

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/qformer"
	"github.com/loomtrain/loom/models/vit"
)

// blip2 is BLIP-2 (Li et al. 2023, arXiv 2301.12597; LAVIS blip2_qformer.py
// and blip2_opt.py at 506965b) and InstructBLIP (arXiv 2305.06500; LAVIS
// blip2_vicuna_instruct.py).
//
// Parameters: vit.* (frozen at construction, §3.1 "frozen image encoder"),
// ln_vision.* (a new LayerNorm after the ViT, trainable: LAVIS blip2.py
// init_vision_encoder), qformer.* and, in stage 2 and InstructBLIP,
// llm_proj.* and llm.* (the LLM frozen at construction, §3.3).
//
// Stage 1 reads Images (one per row) and Tokens (Q-Former caption tokens,
// first token Special.BOS in the [CLS] role) and returns itc + itm + itg
// (equal weights, LAVIS Blip2Qformer.forward); ITM needs at least two rows
// (its negatives come from the batch). The Q-Former's dropout
// (QFormer.Dropout, 0.1 at paper size) is active when Forward records on a
// tape; its masks are drawn per row from (Batch.Seed, pass, RowOffset +
// row), or (Group.Seed, pass, Group.Offset + row), so a row gets the same
// masks however its global batch is split. Stage 2 reads Images and
// Tokens (LLM caption tokens; Loss optional) and returns lm. InstructBLIP
// also reads Instruction (Q-Former tokens) and Loss (false on the prompt).
type blip2 struct {
	cfg     Config
	params  *nn.Params
	vit     *vit.ViT
	lnV     nn.LayerNorm
	qf      *qformer.QFormer
	llmProj nn.Linear
	llm     *llm.Model
}

func newBLIP2(cfg Config, seed uint64) (*blip2, error) {
	m := &blip2{cfg: cfg, params: nn.NewParams()}
	rng := nn.Rng(seed)
	var err error
	if m.vit, err = vit.New(m.params, rng, "vit", cfg.ViT); err != nil {
		return nil, err
	}
	m.lnV = nn.NewLayerNorm(m.params, "ln_vision", cfg.ViT.Width, 1e-5)
	if m.qf, err = qformer.New(m.params, rng, "qformer", cfg.qformerConfig()); err != nil {
		return nil, err
	}
	frozen := []string{"vit.*"}
	if cfg.Family == InstructBLIP || cfg.Stage == 2 {
		m.llmProj = nn.NewLinear(m.params, rng, "llm_proj", cfg.QFormer.Hidden, cfg.LLM.Hidden, true)
		if m.llm, err = llm.New(m.params, rng, "llm.", cfg.LLM); err != nil {
			return nil, err
		}
		frozen = append(frozen, "llm.*")
	}
	if _, err := m.params.Freeze(frozen...); err != nil {
		return nil, err
	}
	return m, nil
}

// Unreached lists the parameters of c's model whose outputs never reach
// the loss, so that they get no gradient: InstructBLIP's text FFN of the
// Q-Former's last layer only transforms the instruction's outputs, which
// are discarded (only the query outputs go to the LLM; in LAVIS
// blip2_vicuna_instruct their grad stays None and AdamW skips them). A
// trainer freezes them, so that weight decay does not move them either.
func (c Config) Unreached() []string {
	if c.Family != InstructBLIP || c.QFormer.Layers == 0 {
		return nil
	}
	n := fmt.Sprintf("qformer.layer.%d", c.QFormer.Layers-1)
	return []string{n + ".intermediate.*", n + ".output.*"}
}

// QFormerConfig is the Q-Former New builds for c's family and stage: c's
// QFormer with the text side and the stage-1 heads set as the family uses
// them (what a Hugging Face mapping of the Q-Former is built for).
func (c Config) QFormerConfig() qformer.Config { return c.qformerConfig() }

func (m *blip2) Config() Config     { return m.cfg }
func (m *blip2) Params() *nn.Params { return m.params }

// checkBatch checks a batch's rows (its Group aside), that it has one
// valid image per row, and its token ids against vocab.
func (m *blip2) checkBatch(b *Batch, vocab int) error {
	rows := *b
	rows.Group = nil // the caller checks it
	if err := rows.checkRows(); err != nil {
		return err
	}
	if err := checkImages(b.Images, m.cfg); err != nil {
		return err
	}
	if b.Images == nil || b.Images.Shape[0] != len(b.Tokens) {
		return fmt.Errorf("batch: images: BLIP-2 needs one image per row (%d rows)", len(b.Tokens))
	}
	return checkIDs("tokens", b.Tokens, vocab)
}

func (m *blip2) Forward(tp *kernels.Tape, b *Batch) (Output, error) {
	vocab := m.cfg.LLM.Vocab
	if m.cfg.Family == BLIP2 && m.cfg.Stage == 1 {
		vocab = m.cfg.QFormer.Vocab
	}
	if err := m.checkBatch(b, vocab); err != nil {
		return Output{}, err
	}
	if b.Group != nil && !(m.cfg.Family == BLIP2 && m.cfg.Stage == 1) {
		return Output{}, fmt.Errorf("batch: group: only BLIP-2 stage 1 (ITC, ITM) uses one")
	}
	var raw *kernels.Tensor
	if raw = m.cachedViT(b); raw == nil {
		raw = m.vit.Forward(tp, b.Images, vit.LastAll)
	}
	feats := m.lnV.Forward(tp, raw)
	if m.cfg.Family == BLIP2 && m.cfg.Stage == 1 {
		return m.stage1(tp, b, raw, feats)
	}
	return m.stage2(tp, b, feats)
}

// padRows pads rows with pad to the longest and returns ids [B·T], T and
// the lengths.
func padRows(rows [][]int32, pad int32) ([]int32, int, []int) {
	t := 0
	for _, r := range rows {
		t = max(t, len(r))
	}
	ids := make([]int32, 0, len(rows)*t)
	lens := make([]int, len(rows))
	for i, r := range rows {
		lens[i] = len(r)
		ids = append(ids, r...)
		for j := len(r); j < t; j++ {
			ids = append(ids, pad)
		}
	}
	return ids, t, lens
}

// l2normalize divides the last dimension by its Euclidean norm, composed
// as RMSNorm (x/√(mean x²)) scaled by 1/√D.
func l2normalize(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor {
	d := x.Shape[len(x.Shape)-1]
	return tp.Scale(tp.RMSNorm(x, kernels.Full(1, d), 1e-12), float32(1/math.Sqrt(float64(d))))
}

// group is the set of rows ITC and ITM span: the batch itself, or the
// Batch.Group it belongs to.
type group struct {
	off, size int
	tokens    [][]int32
	keys      []uint64 // image keys, group order (nil: unknown)
	seed      uint64
	gather    func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor // nil: the batch is the group, or contrast is set
	contrast  *Contrast                                                 // GradCache: the group's ITC, precomputed
}

func (b *Batch) group() (group, error) {
	g := b.Group
	if g == nil {
		return group{size: len(b.Tokens), tokens: b.Tokens, keys: b.ImageKeys, seed: b.Seed}, nil
	}
	if g.Gather == nil && g.Contrast == nil {
		return group{}, fmt.Errorf("batch: group: Gather is nil")
	}
	if g.Offset < 0 || g.Offset+len(b.Tokens) > len(g.Tokens) {
		return group{}, fmt.Errorf("batch: group: offset %d with %d rows outside the group's %d", g.Offset, len(b.Tokens), len(g.Tokens))
	}
	for i, row := range b.Tokens {
		if !slices.Equal(row, g.Tokens[g.Offset+i]) {
			return group{}, fmt.Errorf("batch: group: tokens[%d] differs from the group's row %d", i, g.Offset+i)
		}
	}
	if g.ImageKeys != nil && len(g.ImageKeys) != len(g.Tokens) {
		return group{}, fmt.Errorf("batch: group: %d image keys for %d rows", len(g.ImageKeys), len(g.Tokens))
	}
	if g.Contrast != nil {
		if n := len(g.Tokens); len(g.Contrast.Sim) != n*n {
			return group{}, fmt.Errorf("batch: group: contrast: similarity matrix of %d values for a group of %d rows", len(g.Contrast.Sim), n)
		}
		return group{off: g.Offset, size: len(g.Tokens), tokens: g.Tokens, keys: g.ImageKeys, seed: g.Seed, contrast: g.Contrast}, nil
	}
	return group{off: g.Offset, size: len(g.Tokens), tokens: g.Tokens, keys: g.ImageKeys, seed: g.Seed, gather: g.Gather}, nil
}

// maxOverQueries returns [rows, cols] with the maximum over the nq
// queries of sim [rows·nq, cols] (row i, query k at i·nq+k), through an
// IndexSelect of the arg-max, which is exactly max's gradient path; when
// transposed, sim is [cols·nq, rows] instead (query side on the other
// axis) and the result is still [rows, cols].
func maxOverQueries(tp *kernels.Tape, sim *kernels.Tensor, rows, cols, nq int, transposed bool) *kernels.Tensor {
	at := func(i, k, j int) int { return (i*nq+k)*cols + j }
	if transposed {
		at = func(i, k, j int) int { return (j*nq+k)*rows + i }
	}
	pick := make([]int32, rows*cols)
	sd := sim.HostData() // a device tensor's values come to the host once
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			best := at(i, 0, j)
			for k := 1; k < nq; k++ {
				if p := at(i, k, j); sd[p] > sd[best] {
					best = p
				}
			}
			pick[i*cols+j] = int32(best)
		}
	}
	return tp.Reshape(tp.IndexSelect(tp.Reshape(sim, sim.Size(), 1), 0, pick), rows, cols)
}

// negRng is the generator of one ITM negative: a function of the group's
// seed and the global index of the row it is drawn for (2·row for a text's
// negative image, 2·row+1 for an image's negative text), so that the same
// negatives are drawn whatever the rows' split across workers.
func negRng(seed uint64, k int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x1b873593<<32|uint64(k)))
}

func (m *blip2) stage1(tp *kernels.Tape, b *Batch, raw, feats *kernels.Tensor) (Output, error) {
	nb := len(b.Tokens)
	nq := m.cfg.QFormer.Queries
	hd := m.qf.Heads()
	ls := m.cfg.LabelSmoothing
	ids, t, lens := padRows(b.Tokens, m.cfg.Special.Pad)
	g, err := b.group()
	if err != nil {
		return Output{}, err
	}

	// ITC (§3.2): unimodal passes; similarity = max over queries / temp,
	// over every row of the group (LAVIS all-gathers the features across
	// workers, concat_all_gather): this batch's images against the
	// group's texts and its texts against the group's images.
	m.clampTemp()
	ds, doff := dropSeed(b)
	imgFeat, txtFeat := m.itcFeatures(tp, b, feats, ids, t, lens, tp != nil, ds, doff)
	// i2t(i) is image i's similarity to every text of the group, t2i(j)
	// text j's to every image (this batch's rows i, j).
	var i2t, t2i func(int) []float32
	var itc *kernels.Tensor
	ceOpt := kernels.CEOptions{LabelSmoothing: ls}
	diag := make([]int32, nb)
	for i := range diag {
		diag[i] = int32(g.off + i)
	}
	if c := g.contrast; c != nil {
		if len(c.Features.ViT) != g.size*(raw.Size()/nb) {
			return Output{}, fmt.Errorf("batch: group: contrast: %d ViT output values for %d rows of %v", len(c.Features.ViT), g.size, raw.Shape[1:])
		}
		var err error
		if itc, err = m.cachedITC(tp, c, g, imgFeat, txtFeat); err != nil {
			return Output{}, err
		}
		i2t = func(i int) []float32 { return c.Sim[(g.off+i)*g.size : (g.off+i+1)*g.size] }
		t2i = func(j int) []float32 {
			col := make([]float32, g.size)
			for k := range col {
				col[k] = c.Sim[k*g.size+g.off+j]
			}
			return col
		}
	} else {
		var simI2T, simT2I *kernels.Tensor // [B, G]: this batch's rows against the group's
		if g.gather == nil {
			simI2T = m.simMatrix(tp, imgFeat, txtFeat)
			simT2I = tp.Transpose(simI2T, 0, 1)
		} else {
			// The group's whole similarity matrix, as one worker holding
			// the group computes it (the same values bit for bit), of
			// which this batch keeps its rows (i2t) and its columns (t2i).
			full := m.simMatrix(tp, g.gather(tp, imgFeat), g.gather(tp, txtFeat)) // [G, G]
			simI2T = tp.Slice(full, 0, g.off, g.off+nb)
			simT2I = tp.Slice(tp.Transpose(full, 0, 1), 0, g.off, g.off+nb)
		}
		itc = itcLoss(tp, simI2T, simT2I, diag, ceOpt, itcTargets(g.tokens, g.keys, g.off, nb, ls))
		i2tData, t2iData := simI2T.HostData(), simT2I.HostData()
		i2t = func(i int) []float32 { return i2tData[i*g.size : (i+1)*g.size] }
		t2i = func(j int) []float32 { return t2iData[j*g.size : (j+1)*g.size] }
	}
	loss := newLossSum(tp, m.cfg)
	loss.add("itc", itc)
	var negImg, negTxt []int32
	output := func() (Output, error) {
		o, err := loss.output()
		o.NegImages, o.NegTexts = negImg, negTxt
		return o, err
	}

	// ITM (§3.2): bidirectional [queries; text] with cross-attention, one
	// hard negative image per text and one hard negative text per image,
	// drawn from the group ∝ softmax(sim) with the positive excluded;
	// score = mean over queries of the ITM logits.
	if g.size >= 2 && m.cfg.LossWeight("itm") > 0 {
		negImg = make([]int32, nb) // group index, for text j
		negTxt = make([]int32, nb) // group index, for image i
		same := samePair(g.tokens, g.keys)
		for j := 0; j < nb; j++ {
			negImg[j] = sampleNeg(negRng(g.seed, 2*(g.off+j)), t2i(j), same(g.off+j))
		}
		for i := 0; i < nb; i++ {
			negTxt[i] = sampleNeg(negRng(g.seed, 2*(g.off+i)+1), i2t(i), same(g.off+i))
		}
		// Negative images come from the group: the frozen ViT's outputs
		// are gathered and the trainable ln_vision runs here.
		var negFeats *kernels.Tensor
		switch {
		case g.contrast != nil:
			vitAll := kernels.New(g.contrast.Features.ViT, append([]int{g.size}, raw.Shape[1:]...)...)
			negFeats = m.lnV.Forward(tp, tp.IndexSelect(vitAll, 0, negImg))
		case g.gather == nil:
			negFeats = tp.IndexSelect(feats, 0, negImg)
		default:
			negFeats = m.lnV.Forward(tp, tp.IndexSelect(g.gather(tp, raw), 0, negImg))
		}
		txtRows := make([][]int32, 0, 3*nb)
		txtRows = append(txtRows, b.Tokens...) // positives
		txtRows = append(txtRows, b.Tokens...) // (text_pos, image_neg)
		for i := 0; i < nb; i++ {              // (text_neg, image_pos)
			txtRows = append(txtRows, g.tokens[negTxt[i]])
		}
		allIDs, tt, allLens := padRows(txtRows, m.cfg.Special.Pad)
		images := tp.Concat(0, feats, negFeats, feats)
		rs := slices.Concat(rowSeeds(ds, passITMPos, doff, nb), rowSeeds(ds, passITMNegImage, doff, nb), rowSeeds(ds, passITMNegText, doff, nb))
		out := m.qf.Forward(tp, qformer.Input{Queries: true, Image: images, Text: allIDs, B: 3 * nb, T: tt, TextLens: allLens, Train: tp != nil, RowSeeds: rs})
		logits := tp.MeanAxis(hd.ITM.Forward(tp, tp.Slice(out, 1, 0, nq)), 1) // [3B, 2]
		labels := make([]int32, 3*nb)
		for i := 0; i < nb; i++ {
			labels[i] = 1
		}
		loss.add("itm", tp.CrossEntropy(logits, labels, kernels.CEOptions{}))
	}
	if m.cfg.LossWeight("itg") == 0 {
		return output()
	}

	// ITG (§3.2): [DEC] replaces [CLS]; UniLM mask over [queries; text];
	// next-token loss on the text, padding ignored. (LAVIS reuses the
	// query pass's key/value cache; with the UniLM mask the query rows see
	// only queries, so one joint pass computes the same thing.)
	dec := append([]int32(nil), ids...)
	for i := 0; i < nb; i++ {
		dec[i*t] = m.cfg.Special.Dec
	}
	out := m.qf.Forward(tp, qformer.Input{Queries: true, Image: feats, Text: dec, B: nb, T: t, TextLens: lens, Mask: qformer.UniLMMask, Train: tp != nil, RowSeeds: rowSeeds(ds, passITG, doff, nb)})
	var rows, tgt []int32
	for i := 0; i < nb; i++ {
		for p := 0; p+1 < lens[i]; p++ {
			rows = append(rows, int32(i*(nq+t)+nq+p))
			tgt = append(tgt, ids[i*t+p+1])
		}
	}
	if len(rows) > 0 {
		h := tp.IndexSelect(tp.Reshape(out, nb*(nq+t), m.cfg.QFormer.Hidden), 0, rows)
		itg := tp.CrossEntropy(m.qf.LMLogits(tp, h), tgt, kernels.CEOptions{LabelSmoothing: ls})
		if g.gather != nil || g.contrast != nil {
			// The group's ITG is the mean over all of its predicted
			// tokens; this batch's share of it, counted (like ITC and
			// ITM) per sample, is its token sum over the group's tokens
			// times G/B.
			groupTokens := 0
			for _, row := range g.tokens {
				groupTokens += max(0, len(row)-1)
			}
			itg = tp.Scale(itg, float32(float64(len(rows))*float64(g.size)/(float64(groupTokens)*float64(nb))))
		}
		loss.add("itg", itg)
	}
	return output()
}

// The Q-Former passes whose dropout masks rowSeeds derives.
const (
	passImage       uint64 = iota + 1 // ITC's image queries
	passText                          // ITC's text
	passITMPos                        // ITM (text, image)
	passITMNegImage                   // ITM (text, negative image)
	passITMNegText                    // ITM (negative text, image)
	passITG                           // ITG
	passStage2                        // stage 2 / InstructBLIP query pass
)

// dropSeed returns the seed and the global index of the first row that
// stage 1's dropout masks derive from: the group's, or the batch's own.
func dropSeed(b *Batch) (uint64, int) {
	if b.Group != nil {
		return b.Group.Seed, b.Group.Offset
	}
	return b.Seed, b.RowOffset
}

// rowSeeds is one dropout seed per row of a pass: a function of the
// seed, the pass and the row's global index (first + i) only.
func rowSeeds(seed, pass uint64, first, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = seed ^ (pass << 56) ^ uint64(first+i)*0x9e3779b97f4a7c15
	}
	return out
}

// cachedViT returns the batch's rows of the ViT outputs its group's
// Contrast holds (GradCache's first pass ran the ViT on the same images),
// when the ViT is frozen, so that nothing needs its graph; nil otherwise.
func (m *blip2) cachedViT(b *Batch) *kernels.Tensor {
	if b.Group == nil || b.Group.Contrast == nil {
		return nil
	}
	for _, p := range m.params.Trainable() {
		if strings.HasPrefix(p.Name, "vit.") {
			return nil
		}
	}
	n, g := len(b.Tokens), len(b.Group.Tokens)
	all := b.Group.Contrast.Features.ViT
	if g == 0 || len(all)%g != 0 || b.Group.Offset < 0 || b.Group.Offset+n > g {
		return nil // group() refuses it with the reason
	}
	per := len(all) / g
	w := m.cfg.ViT.Width
	if per%w != 0 {
		return nil
	}
	return kernels.New(all[b.Group.Offset*per:(b.Group.Offset+n)*per], n, per/w, w)
}

// clampTemp clamps the ITC temperature to [0.001, 0.5] before use, as
// LAVIS does.
func (m *blip2) clampTemp() {
	hd := m.qf.Heads()
	if v := hd.Temp.HostData()[0]; v < 0.001 || v > 0.5 {
		hd.Temp.SetData([]float32{float32(math.Min(math.Max(float64(v), 0.001), 0.5))})
	}
}

// itcFeatures runs ITC's unimodal passes: the image query features
// [B, Nq, E] and the text [CLS] features [B, E], L2-normalised.
func (m *blip2) itcFeatures(tp *kernels.Tape, b *Batch, feats *kernels.Tensor, ids []int32, t int, lens []int, train bool, seed uint64, off int) (img, txt *kernels.Tensor) {
	nb := len(b.Tokens)
	hd := m.qf.Heads()
	q := m.qf.Forward(tp, qformer.Input{Queries: true, Image: feats, B: nb, Train: train, RowSeeds: rowSeeds(seed, passImage, off, nb)})
	img = l2normalize(tp, hd.VisionProj.Forward(tp, q))
	out := m.qf.Forward(tp, qformer.Input{Text: ids, B: nb, T: t, TextLens: lens, Train: train, RowSeeds: rowSeeds(seed, passText, off, nb)})
	cls := tp.Reshape(tp.Slice(out, 1, 0, 1), nb, m.cfg.QFormer.Hidden)
	return img, l2normalize(tp, hd.TextProj.Forward(tp, cls))
}

// simMatrix is ITC's similarity of images [R, Nq, E] to texts [C, E]:
// [R, C], the maximum over queries of the dot product over the
// temperature.
func (m *blip2) simMatrix(tp *kernels.Tape, img, txt *kernels.Tensor) *kernels.Tensor {
	r, nq, e, c := img.Shape[0], img.Shape[1], img.Shape[2], txt.Shape[0]
	simQ := tp.MatmulT(tp.Reshape(img, r*nq, e), txt, false, true) // [R·Nq, C]: (i, q) × j
	return tp.Div(maxOverQueries(tp, simQ, r, c, nq, false), m.qf.Heads().Temp)
}

// ContrastFeatures returns a batch's ITC features and ViT outputs without
// a graph: GradCache's first pass (Group.Contrast). Dropout is that of
// Forward's training pass: when b.Group is set, only its Seed and Offset
// are read (the group's rows are not known yet).
func (m *blip2) ContrastFeatures(b *Batch) (ContrastFeatures, error) {
	return m.features(b, true)
}

// Embed returns a batch's ITC features as evaluation sees them (no
// dropout): the L2-normalised image query embeddings [n, Queries,
// EmbedDim] and text [CLS] embeddings [n, EmbedDim] that ITC compares
// (`loom embed`).
func (m *blip2) Embed(b *Batch) (ContrastFeatures, error) {
	return m.features(b, false)
}

func (m *blip2) features(b *Batch, train bool) (ContrastFeatures, error) {
	if m.cfg.Family != BLIP2 || m.cfg.Stage != 1 {
		return ContrastFeatures{}, fmt.Errorf("contrast features: only BLIP-2 stage 1 has them")
	}
	if err := m.checkBatch(b, m.cfg.QFormer.Vocab); err != nil {
		return ContrastFeatures{}, err
	}
	raw := m.vit.Forward(nil, b.Images, vit.LastAll)
	feats := m.lnV.Forward(nil, raw)
	ids, t, lens := padRows(b.Tokens, m.cfg.Special.Pad)
	ds, doff := dropSeed(b)
	img, txt := m.itcFeatures(nil, b, feats, ids, t, lens, train, ds, doff)
	return ContrastFeatures{Image: img.HostData(), Text: txt.HostData(), ViT: raw.HostData(), Tokens: b.Tokens, ImageKeys: b.ImageKeys}, nil
}

// Contrast computes ITC over a group from the features of all of its rows
// (group order) and its gradient with respect to them and to the
// temperature: the same values, bit for bit, as Forward computes for a
// batch holding the whole group.
func (m *blip2) Contrast(f ContrastFeatures) (*Contrast, error) {
	if m.cfg.Family != BLIP2 || m.cfg.Stage != 1 {
		return nil, fmt.Errorf("contrast: only BLIP-2 stage 1 contrasts")
	}
	e, nq, w := m.cfg.QFormer.EmbedDim, m.cfg.QFormer.Queries, m.cfg.ViT.Width
	g := len(f.Text) / e
	switch {
	case g == 0 || len(f.Text) != g*e:
		return nil, fmt.Errorf("contrast: text features: %d values, want rows × %d", len(f.Text), e)
	case len(f.Image) != g*nq*e:
		return nil, fmt.Errorf("contrast: image features: %d values, want %d rows × %d queries × %d", len(f.Image), g, nq, e)
	case len(f.ViT) == 0 || len(f.ViT)%(g*w) != 0:
		return nil, fmt.Errorf("contrast: ViT outputs: %d values, want %d rows × patches × %d", len(f.ViT), g, w)
	case f.Tokens != nil && len(f.Tokens) != g:
		return nil, fmt.Errorf("contrast: tokens: %d rows, the features %d", len(f.Tokens), g)
	case f.ImageKeys != nil && len(f.ImageKeys) != g:
		return nil, fmt.Errorf("contrast: image keys: %d rows, the features %d", len(f.ImageKeys), g)
	}
	var targets *kernels.Tensor
	if f.Tokens != nil {
		targets = itcTargets(f.Tokens, f.ImageKeys, 0, g, m.cfg.LabelSmoothing)
	}
	m.clampTemp()
	tp := kernels.NewTape()
	img := kernels.New(slices.Clone(f.Image), g, nq, e).SetRequiresGrad(true)
	txt := kernels.New(slices.Clone(f.Text), g, e).SetRequiresGrad(true)
	hd := m.qf.Heads()
	temp := hd.Temp
	// The temperature's gradient goes to Contrast.TempGrad, not to the
	// parameter (each member back-propagates its share in Forward).
	saved := temp.Grad
	temp.Grad = nil
	defer func() { temp.Grad = saved }()
	rg := temp.RequiresGrad()
	temp.SetRequiresGrad(true)
	defer temp.SetRequiresGrad(rg)
	full := m.simMatrix(tp, img, txt)
	sim := slices.Clone(full.HostData())
	diag := make([]int32, g)
	for i := range diag {
		diag[i] = int32(i)
	}
	ceOpt := kernels.CEOptions{LabelSmoothing: m.cfg.LabelSmoothing}
	itc := itcLoss(tp, full, tp.Transpose(full, 0, 1), diag, ceOpt, targets)
	loss := itc.Item()
	tp.Backward(itc)
	return &Contrast{Features: f, Sim: sim, Loss: loss, ImageGrad: img.Grad, TextGrad: txt.Grad, TempGrad: temp.Grad[0]}, nil
}

// cachedITC is ITC for a batch of a group contrasted ahead of time
// (GradCache's second pass): the group's loss, whose backward gives this
// batch's features their rows of the cached gradient and the temperature
// the cached gradient, each scaled by G/B (the batch's loss counts B/G of
// the group's, per sample, like ITM's and ITG's shares). The features,
// recomputed here with the graph, must be the first pass's bit for bit.
func (m *blip2) cachedITC(tp *kernels.Tape, c *Contrast, g group, img, txt *kernels.Tensor) (*kernels.Tensor, error) {
	nb, nq, e := img.Shape[0], img.Shape[1], img.Shape[2]
	io, to := g.off*nq*e, g.off*e
	if len(c.Features.Image) < io+img.Size() || len(c.Features.Text) < to+txt.Size() ||
		!slices.Equal(img.HostData(), c.Features.Image[io:io+img.Size()]) || !slices.Equal(txt.HostData(), c.Features.Text[to:to+txt.Size()]) {
		return nil, fmt.Errorf("batch: group: contrast: the features of rows %d–%d differ from the first pass's (a different batch, seed or weights)", g.off, g.off+nb-1)
	}
	temp := m.qf.Heads().Temp
	out := kernels.Scalar(c.Loss)
	return tp.Custom("GradCacheITC", out, func() {
		u := float64(out.Grad[0])
		s := u * float64(g.size) / float64(nb)
		if img.RequiresGrad() {
			for i, gi := range img.GradBuf() {
				img.Grad[i] = gi + float32(s*float64(c.ImageGrad[io+i]))
			}
		}
		if txt.RequiresGrad() {
			for i, gi := range txt.GradBuf() {
				txt.Grad[i] = gi + float32(s*float64(c.TextGrad[to+i]))
			}
		}
		if temp.RequiresGrad() {
			temp.GradBuf()[0] += float32(u * float64(c.TempGrad))
		}
	}, img, txt, temp), nil
}

// sampleNeg draws an index ∝ softmax(logits) among those that skip does
// not exclude (the row itself and the rows with its caption: LAVIS masks
// the positives, by image id where it has them). When skip excludes every
// index (a group of one caption), only the first excluded one, the row
// itself, is left out.
func sampleNeg(rng *rand.Rand, logits []float32, skip []int) int32 {
	excluded := make([]bool, len(logits))
	for _, k := range skip {
		excluded[k] = true
	}
	if len(skip) >= len(logits) {
		excluded = make([]bool, len(logits))
		excluded[skip[0]] = true
	}
	mx := math.Inf(-1)
	for k, v := range logits {
		if !excluded[k] {
			mx = math.Max(mx, float64(v))
		}
	}
	w := make([]float64, len(logits))
	var sum float64
	for k, v := range logits {
		if !excluded[k] {
			w[k] = math.Exp(float64(v) - mx)
			sum += w[k]
		}
	}
	u := rng.Float64() * sum
	for k, v := range w {
		if excluded[k] {
			continue
		}
		if u < v {
			return int32(k)
		}
		u -= v
	}
	for k := len(w) - 1; k >= 0; k-- {
		if !excluded[k] {
			return int32(k)
		}
	}
	return int32(skip[0])
}

// samePair returns, for a row of the group, that row and every other row
// with the same caption tokens or the same image (equal non-zero keys;
// keys may be nil), itself first: the rows that are not its negatives.
func samePair(tokens [][]int32, keys []uint64) func(i int) []int {
	return func(i int) []int {
		out := []int{i}
		for k, row := range tokens {
			if k == i {
				continue
			}
			if slices.Equal(row, tokens[i]) || (keys != nil && keys[i] != 0 && keys[k] == keys[i]) {
				out = append(out, k)
			}
		}
		return out
	}
}

// itcTargets is ITC's target distribution for rows off..off+n of a group
// whose captions repeat: row i's targets spread 1−ls over the rows with
// its caption (itself included) and ls over all G, as LAVIS's sim_targets
// over its image-id positives (blip2_qformer.py; there 0.1 and 0.9).
// Captions shared within a batch are not each other's negatives. nil when
// every caption of the group is distinct: the targets are then the
// diagonal, which the hard-label cross-entropy computes.
func itcTargets(tokens [][]int32, keys []uint64, off, n int, ls float32) *kernels.Tensor {
	g := len(tokens)
	same := samePair(tokens, keys)
	dup := false
	for i := 0; i < g && !dup; i++ {
		dup = len(same(i)) > 1
	}
	if !dup {
		return nil
	}
	t := kernels.Zeros(n, g)
	for r := 0; r < n; r++ {
		pos := same(off + r)
		for k := 0; k < g; k++ {
			t.Data[r*g+k] = ls / float32(g)
		}
		for _, k := range pos {
			t.Data[r*g+k] += (1 - ls) / float32(len(pos))
		}
	}
	return t
}

// itcLoss is ½(CE of each image over the texts + CE of each text over the
// images) for the rows i2t and t2i hold: against the diagonal (label
// smoothed) when targets is nil, else against the soft targets.
func itcLoss(tp *kernels.Tape, i2t, t2i *kernels.Tensor, diag []int32, opt kernels.CEOptions, targets *kernels.Tensor) *kernels.Tensor {
	if targets == nil {
		return tp.Scale(tp.Add(tp.CrossEntropy(i2t, diag, opt), tp.CrossEntropy(t2i, diag, opt)), 0.5)
	}
	soft := func(sim *kernels.Tensor) *kernels.Tensor {
		return tp.Scale(tp.Sum(tp.Mul(tp.LogSoftmax(sim), targets)), -1/float32(sim.Shape[0]))
	}
	return tp.Scale(tp.Add(soft(i2t), soft(t2i)), 0.5)
}

// stage2 projects the query outputs into the LLM as soft prompts (§3.3;
// LAVIS blip2_opt.forward: inputs_opt = opt_proj(query_output); attention
// mask 1, labels -100 on them).
func (m *blip2) stage2(tp *kernels.Tape, b *Batch, feats *kernels.Tensor) (Output, error) {
	nb := len(b.Tokens)
	nq := m.cfg.QFormer.Queries
	in := qformer.Input{Queries: true, Image: feats, B: nb, Train: tp != nil, RowSeeds: rowSeeds(b.Seed, passStage2, b.RowOffset, nb)}
	if m.cfg.Family == InstructBLIP {
		// The instruction joins the queries in the Q-Former's
		// self-attention (bidirectional, padding hidden); only the query
		// outputs go on (LAVIS blip2_vicuna_instruct.py).
		if len(b.Instruction) != nb {
			return Output{}, fmt.Errorf("batch: instruction has %d rows, tokens has %d", len(b.Instruction), nb)
		}
		if err := checkIDs("instruction", b.Instruction, m.cfg.QFormer.Vocab); err != nil {
			return Output{}, err
		}
		in.Text, in.T, in.TextLens = padRows(b.Instruction, m.cfg.Special.Pad)
	}
	q := m.qf.Forward(tp, in)
	if in.Text != nil {
		q = tp.Slice(q, 1, 0, nq)
	}
	soft := tp.Reshape(m.llmProj.Forward(tp, q), nb*nq, m.cfg.LLM.Hidden)
	rows := make([][]piece, nb)
	for r, toks := range b.Tokens {
		for k := 0; k < nq; k++ {
			rows[r] = append(rows[r], piece{feat: r*nq + k, seg: 0})
		}
		for t, id := range toks {
			loss := true // the first caption token is predicted from the last query
			if b.Loss != nil {
				loss = b.Loss[r][t]
			}
			rows[r] = append(rows[r], piece{tok: id, feat: -1, loss: loss})
		}
	}
	p, err := pack(rows, nb*nq)
	if err != nil {
		return Output{}, err
	}
	x := p.embed(tp, m.llm.Embed, nil, soft, m.cfg.LLM.Hidden)
	h := m.llm.Forward(tp, x, llm.Layout{KeyLens: p.lens})
	loss, n := lmLoss(tp, h, func(x *kernels.Tensor) *kernels.Tensor { return m.llm.Logits(tp, x) }, p, false, 0)
	if n == 0 {
		return Output{}, fmt.Errorf("batch: loss: no token is trained")
	}
	s := newLossSum(tp, m.cfg)
	s.add("lm", loss)
	return s.output()
}
