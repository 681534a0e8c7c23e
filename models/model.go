package models

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
	"github.com/loomtrain/loom/models/tokenizer"
)

// Model is what the trainer drives: one family built from a Config.
type Model interface {
	// Config returns the configuration the model was built from.
	Config() Config
	// Params is the named parameter tree: freeze, unfreeze, drop, save and
	// load through it.
	Params() *nn.Params
	// Forward runs one batch and returns the loss to back-propagate and its
	// named terms. Errors name the batch field at fault; shape mistakes
	// inside the model panic (kernels.Catch turns them into errors). A
	// nil tape runs without recording (evaluation). Forward is not safe
	// for concurrent use on one model (BLIP-2 clamps its temperature in
	// place, as LAVIS does).
	Forward(tp *kernels.Tape, b *Batch) (Output, error)
}

// Batch is one training batch. Which fields a family reads is documented on
// the family; unused fields must be nil.
type Batch struct {
	// Images [N, C, H, W], in the order their placeholders appear in
	// Tokens (row by row, left to right). BLIP-2 and Qwen-VL/LLaVA take
	// values normalised as their ViT expects; LWM takes none (its images are
	// vision tokens already).
	Images *kernels.Tensor
	// Tokens holds one row of token ids per sequence. LLaVA/VILA rows
	// contain Special.Image placeholders, Qwen-VL rows <img></img> pairs,
	// LWM rows text and vision ids (see Vision). For BLIP-2 stage 1 the
	// rows are the Q-Former's caption tokens starting with Special.BOS (the
	// [CLS] position); in stage 2 they are the LLM's caption tokens.
	Tokens [][]int32
	// Loss marks, per token, whether predicting it is trained (true), e.g.
	// false on prompts and user turns. nil trains every token but the first.
	Loss [][]bool
	// Vision marks LWM's vision ids (an index into the vision vocabulary).
	Vision [][]bool
	// Segments gives, per token of a packed row, the document it belongs
	// to: documents never attend to each other and positions restart at 0.
	// nil is one document per row. (Images inherit their placeholder's.)
	Segments [][]int32
	// Instruction holds InstructBLIP's instruction tokens for the Q-Former.
	Instruction [][]int32
	// ImageKeys says, per row, which image it shows: rows with the same
	// non-zero key show the same image (a dataset with several captions per
	// image), and, like rows with the same caption, are not each other's
	// negatives in BLIP-2's ITC and ITM (LAVIS's image_id). nil or 0:
	// unknown.
	ImageKeys []uint64
	// Seed drives the random choices of a step (BLIP-2's ITM hard-negative
	// sampling, the Q-Former's dropout), so a step is a pure function of
	// the batch.
	Seed uint64
	// RowOffset is the index of the batch's first row in the global batch
	// it is part of (0 for a batch that is its own). BLIP-2's dropout
	// masks are a function of (Seed, RowOffset + row) (of Group.Seed and
	// Group.Offset + row when Group is set), so a caller that gives every
	// part of a global batch the same Seed gets the same masks however the
	// global batch is split across workers and micro-batches.
	RowOffset int
	// Group, for BLIP-2 stage 1, makes ITC and ITM span a larger set of
	// rows than this batch: the global batch split across data-parallel
	// workers. nil: the batch is the group.
	Group *Group
}

// Group is a set of rows split across several batches (one per
// data-parallel worker) over which BLIP-2 stage 1's contrastive (ITC) and
// matching (ITM) losses run, as LAVIS gathers features across GPUs
// (concat_all_gather): every batch's images are contrasted with every
// text of the group and its ITM hard negatives are drawn from the whole
// group. Each member's loss is its share of the group's loss, counted per
// sample: the sum over the members of loss × rows/Size is the loss of one
// batch holding the whole group, and so is the sum of their gradients
// weighted the same way (ITG, a per-token mean, is rescaled to the group's
// token count). Every member calls Forward with its own rows at the same
// time; the members' Gather calls happen in the same order on every
// member.
//
// With gradient accumulation the members are not all live at once, so the
// group is contrasted ahead of time instead (GradCache, Gao et al. 2021,
// arXiv 2101.06983): Contrast holds ITC over the whole group and its
// gradient with respect to every row's features, computed once from every
// member's ContrastFeatures; each member's Forward then recomputes its
// features with the graph and back-propagates its rows of that cached
// gradient, draws its ITM negatives from the cached similarities and its
// negative images from the cached ViT outputs. No Gather is needed.
type Group struct {
	// Offset is the index in the group of this batch's first row.
	Offset int
	// Tokens holds every row of the group, in group order; this batch's
	// Tokens must equal Tokens[Offset : Offset+len(batch.Tokens)].
	Tokens [][]int32
	// ImageKeys are every row's Batch.ImageKeys, in group order (nil:
	// unknown).
	ImageKeys []uint64
	// Seed drives ITM's negative sampling (it replaces Batch.Seed there):
	// the same on every member, so that each row's negatives are a
	// function of the seed and the row's index in the group.
	Seed uint64
	// Gather returns, for x holding this batch's rows ([n, …]), the
	// group's rows [len(Tokens), …] with this batch's at Offset, as an op
	// on tp whose backward gives x its rows' share of the gradient summed
	// over the members (an all-gather forward, an all-reduce-sum
	// backward). It may panic to abort Forward (a failed collective).
	Gather func(tp *kernels.Tape, x *kernels.Tensor) *kernels.Tensor
	// Contrast, when set, is the group's precomputed ITC (GradCache);
	// Gather is then unused. With the ViT frozen, Forward takes the
	// batch's ViT outputs from it instead of running the ViT again: it
	// must have been computed from this batch's images.
	Contrast *Contrast
}

// ContrastFeatures are BLIP-2 stage 1's per-row features that ITC and ITM
// need from every row of a group, computed without a graph (GradCache's
// first pass), for n rows. The BLIP-2 stage-1 model's method
// ContrastFeatures(*Batch) (ContrastFeatures, error) computes them, with
// dropout as in Forward's training pass (from Batch.Seed), so that Forward
// recomputes the same bits.
type ContrastFeatures struct {
	Image []float32 // [n, Queries, EmbedDim]: L2-normalised projected query outputs
	Text  []float32 // [n, EmbedDim]: L2-normalised projected text [CLS] outputs
	ViT   []float32 // [n, Patches, Width]: the frozen ViT's outputs (ITM's negative images)
	// Tokens are the rows' captions, which say which rows share one (those
	// are not each other's ITC negatives); nil in Contrast: all distinct.
	Tokens [][]int32
	// ImageKeys say which rows show the same image (Batch.ImageKeys), who
	// are not each other's negatives either; nil: unknown.
	ImageKeys []uint64
}

// Contrast is ITC over a whole group of G rows and what the members need
// of it. The BLIP-2 stage-1 model's method Contrast(ContrastFeatures)
// (*Contrast, error) computes it from the features of every row of the
// group (the members' concatenated in group order).
type Contrast struct {
	Features ContrastFeatures // of the G rows, group order
	// Sim [G, G] is image i × text j: the maximum over queries of the
	// features' dot product, divided by the temperature.
	Sim []float32
	// Loss is the group's ITC: ½(mean CE of each image over the texts +
	// mean CE of each text over the images), label-smoothed.
	Loss float32
	// ImageGrad [G, Queries, EmbedDim], TextGrad [G, EmbedDim] and
	// TempGrad are the gradient of Loss with respect to the features and
	// the temperature.
	ImageGrad, TextGrad []float32
	TempGrad            float32
}

// Output is the result of Forward.
type Output struct {
	Loss  *kernels.Tensor    // scalar to back-propagate: Σ Config.LossWeight(name)·Parts[name]
	Terms map[string]float32 // named loss terms, e.g. itc, itm, itg, lm, ce_text, ce_vision, and "loss"
	// Parts are the unweighted terms as tensors on the tape (scalars),
	// including terms of weight 0, which are reported but not in Loss.
	Parts map[string]*kernels.Tensor
	// NegImages and NegTexts are the hard negatives BLIP-2 stage 1's ITM
	// drew, as group rows: NegImages[j] for text j, NegTexts[i] for image
	// i (nil elsewhere), so that another implementation of the step (the
	// PyTorch one of trainer/hfbench) can be fed the same pairs.
	NegImages, NegTexts []int32
}

// Special holds the ids of the special tokens the families use.
type Special struct {
	Pad, BOS, EOS        int32
	Image                int32 // LLaVA/VILA placeholder
	ImgStart, ImgEnd     int32 // Qwen-VL delimiters
	VisionBeg, VisionEnd int32 // LWM text delimiters
	Dec                  int32 // BLIP-2 [DEC]
}

// SpecialFrom reads the special-token ids of a tokenizer; it fails naming
// the first missing token.
func SpecialFrom(t tokenizer.Tokenizer) (Special, error) {
	var s Special
	for _, f := range []struct {
		name string
		dst  *int32
	}{
		{tokenizer.Pad, &s.Pad}, {tokenizer.BOS, &s.BOS}, {tokenizer.EOS, &s.EOS}, {tokenizer.Image, &s.Image},
		{tokenizer.ImgStart, &s.ImgStart}, {tokenizer.ImgEnd, &s.ImgEnd}, {tokenizer.VisionBeg, &s.VisionBeg},
		{tokenizer.VisionEnd, &s.VisionEnd}, {tokenizer.Dec, &s.Dec},
	} {
		id, ok := t.TokenID(f.name)
		if !ok {
			return s, fmt.Errorf("tokenizer has no special token %q", f.name)
		}
		*f.dst = int32(id)
	}
	return s, nil
}

// defaultSpecial places the special tokens at the end of a vocabulary of
// size v, in tokenizer.DefaultSpecial order (what `loom tokenizer train`
// produces).
func defaultSpecial(v int) Special {
	base := int32(v - len(tokenizer.DefaultSpecial))
	return Special{
		Pad: base, BOS: base + 1, EOS: base + 2, Image: base + 3, ImgStart: base + 4, ImgEnd: base + 5,
		VisionBeg: base + 6, VisionEnd: base + 7, Dec: base + 10,
	}
}

// New builds the family named by cfg with parameters drawn from seed.
func New(cfg Config, seed uint64) (Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Family {
	case BLIP2, InstructBLIP:
		return newBLIP2(cfg, seed)
	case QwenVL:
		return newQwenVL(cfg, seed)
	case LLaVA, VILA:
		return newLLaVA(cfg, seed)
	case LWM:
		return newLWM(cfg, seed)
	case VQGAN:
		return newVQ(cfg, seed)
	}
	return nil, fmt.Errorf("family %q: want one of %v", cfg.Family, Families)
}

// Save writes a model's parameters as safetensors. The metadata holds the
// family, the size and the whole Config as JSON ("config"), so that
// ReadConfig can rebuild the model a checkpoint belongs to, plus the
// caller's entries.
func Save(path string, m Model, metadata map[string]string) error {
	md, err := saveMetadata(m, metadata)
	if err != nil {
		return err
	}
	return m.Params().SaveFile(path, md)
}

// SaveTo writes what Save writes to w.
func SaveTo(w io.Writer, m Model, metadata map[string]string) error {
	md, err := saveMetadata(m, metadata)
	if err != nil {
		return err
	}
	return m.Params().Save(w, md)
}

func saveMetadata(m Model, metadata map[string]string) (map[string]string, error) {
	cj, err := json.Marshal(m.Config())
	if err != nil {
		return nil, err
	}
	md := map[string]string{"family": string(m.Config().Family), "size": m.Config().Size, "config": string(cj)}
	for k, v := range metadata {
		md[k] = v
	}
	return md, nil
}

// Open rebuilds the model a file written by Save holds: the family and
// shape from its metadata, every parameter from its tensors (an exact
// match: a missing, extra or wrongly shaped tensor is an error naming it).
func Open(path string) (Model, error) {
	cfg, err := ReadConfig(path)
	if err != nil {
		return nil, err
	}
	m, err := New(cfg, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := Load(path, m, nn.LoadOptions{}); err != nil {
		return nil, err
	}
	return m, nil
}

// ReadConfig returns the Config stored by Save in a checkpoint's metadata.
func ReadConfig(path string) (Config, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	s, ok := f.Metadata["config"]
	if !ok {
		return Config{}, fmt.Errorf("%s: no \"config\" in the metadata (not written by models.Save)", path)
	}
	var c Config
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%s: metadata config: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: metadata config: %w", path, err)
	}
	return c, nil
}

// Load reads a safetensors file into a model's parameters (see
// nn.LoadOptions for partial loading); errors start with the path.
func Load(path string, m Model, opt nn.LoadOptions) ([]string, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, err
	}
	names, err := m.Params().Load(f, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return names, nil
}

// tokensLoss returns the loss flag of token t of row r.
func (b *Batch) tokensLoss(r, t int) bool {
	if b.Loss == nil {
		return t > 0
	}
	return b.Loss[r][t]
}

func (b *Batch) segment(r, t int) int32 {
	if b.Segments == nil {
		return 0
	}
	return b.Segments[r][t]
}

// checkRows validates the per-token side tables against Tokens.
func (b *Batch) checkRows() error {
	if b.Group != nil {
		return fmt.Errorf("batch: group: only BLIP-2 stage 1 (ITC, ITM) uses one")
	}
	if len(b.Tokens) == 0 {
		return fmt.Errorf("batch: tokens: no rows")
	}
	for name, tab := range map[string]int{"loss": len(b.Loss), "vision": len(b.Vision), "segments": len(b.Segments)} {
		if tab != 0 && tab != len(b.Tokens) {
			return fmt.Errorf("batch: %s has %d rows, tokens has %d", name, tab, len(b.Tokens))
		}
	}
	for r, row := range b.Tokens {
		if len(row) == 0 {
			return fmt.Errorf("batch: tokens[%d] is empty", r)
		}
		if b.Loss != nil && len(b.Loss[r]) != len(row) {
			return fmt.Errorf("batch: loss[%d] has %d entries for %d tokens", r, len(b.Loss[r]), len(row))
		}
		if b.Vision != nil && len(b.Vision[r]) != len(row) {
			return fmt.Errorf("batch: vision[%d] has %d entries for %d tokens", r, len(b.Vision[r]), len(row))
		}
		if b.Segments != nil && len(b.Segments[r]) != len(row) {
			return fmt.Errorf("batch: segments[%d] has %d entries for %d tokens", r, len(b.Segments[r]), len(row))
		}
	}
	return nil
}

// checkImages validates images for a ViT: [N, C, H, W] with square sides
// that are multiples of the patch.
func checkImages(images *kernels.Tensor, c Config) error {
	if images == nil {
		return nil
	}
	s := images.Shape
	if len(s) != 4 || s[1] != c.ViT.Channels || s[2] != s[3] || s[2]%c.ViT.PatchSize != 0 || s[2] == 0 {
		return fmt.Errorf("batch: images: shape %v, want [N, %d, S, S] with S a multiple of the %d-pixel patch (the preset trains at %d)",
			s, c.ViT.Channels, c.ViT.PatchSize, c.ImageSize)
	}
	if c.Projector == ProjMLPDownsample && (s[2]/c.ViT.PatchSize)%2 != 0 {
		return fmt.Errorf("batch: images: %d px gives an odd %d-patch grid; the 2×2 downsampling projector needs an even one", s[2], s[2]/c.ViT.PatchSize)
	}
	return nil
}

func checkIDs(field string, rows [][]int32, vocab int) error {
	for r, row := range rows {
		for t, id := range row {
			if id < 0 || int(id) >= vocab {
				return fmt.Errorf("batch: %s[%d][%d] = %d is not a token id (vocabulary %d)", field, r, t, id, vocab)
			}
		}
	}
	return nil
}

// lmLoss is the next-token cross-entropy over the positions of p whose
// target is a text token, averaged over them.
func lmLoss(tp *kernels.Tape, h *kernels.Tensor, head func(*kernels.Tensor) *kernels.Tensor, p *packed, vis bool, smoothing float32) (*kernels.Tensor, int) {
	idx, tgt := p.rowsWhere(vis)
	if len(idx) == 0 {
		return nil, 0
	}
	hid := h.Shape[len(h.Shape)-1]
	rows := tp.IndexSelect(tp.Reshape(h, p.B*p.T, hid), 0, idx)
	return tp.CrossEntropy(head(rows), tgt, kernels.CEOptions{LabelSmoothing: smoothing}), len(idx)
}
