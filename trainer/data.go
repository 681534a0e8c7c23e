package trainer

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"image"
	_ "image/jpeg" // shard images are JPEG or PNG
	_ "image/png"
	"math/rand/v2"
	"strings"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/loomtrain/loom/models/vqgan"
	"github.com/loomtrain/loom/shard"
)

// Format says how a stage turns samples into token rows.
type Format int

// The formats.
const (
	// FormatQFormerCaption: BLIP-2 stage 1. [CLS] + caption (≤ 32 BERT
	// tokens, LAVIS max_txt_len), one image per row.
	FormatQFormerCaption Format = iota
	// FormatSoftPromptCaption: BLIP-2 stage 2. BOS + caption + EOS after
	// the soft prompts, loss on each of them (LAVIS blip2_opt: the OPT
	// tokenizer puts BOS before the caption, and only the queries and
	// padding are masked from the targets).
	FormatSoftPromptCaption
	// FormatQwen: Qwen-VL. Each image is an <img></img> pair the adapter's
	// queries fill; interleaved documents keep their order; conversations
	// train on assistant turns only (finetune.py preprocess).
	FormatQwen
	// FormatLLaVA: LLaVA/VILA. Each image is an <image> placeholder,
	// placed before its text (VILA §2); loss on text only.
	FormatLLaVA
	// FormatLWM: LWM. Text documents as they are; images and videos as VQ
	// codes between <vision> and </vision>, with <eof>/<eov>, in either
	// order (understanding: loss on the text; generation: loss on the
	// vision codes; LWM docs/data.md bracketed fields), packed.
	FormatLWM
	// FormatImage: a VQGAN. The image alone, resized to the VQGAN's
	// resolution, pixels in [-1, 1] (LWM vqgan.py's input range).
	FormatImage
	// FormatInstruction: InstructBLIP. One image per row, an instruction
	// and its answer (LAVIS blip2_vicuna_instruct text_input and
	// text_output). The instruction goes to the Q-Former ([CLS] +
	// instruction, its last tokens kept: truncation_side "left", at most
	// 128) and, after the soft prompts, to the LLM as BOS + prompt with no
	// loss; the answer + EOS carry the loss. Image-text pairs take one of
	// the paper's captioning templates as the instruction; a conversation's
	// user turns are the instruction and its assistant turns the answers.
	FormatInstruction
)

// clipMean and clipStd normalise pixels as the CLIP/EVA ViTs expect
// (OpenAI CLIP preprocessing; LAVIS blip2_image_train uses the same).
var (
	clipMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	clipStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// row is one sample turned into a model row.
type row struct {
	ID     string
	Pos    int64 // position in the stage's stream
	Tokens []int32
	Loss   []bool // nil: the model's default (BLIP-2 stage 1)
	Vision []bool // LWM only
	Images []*kernels.Tensor
	// Prefixed rows are preceded by soft prompts, so their first token has
	// a target too (BLIP-2 stage 2).
	Prefixed bool
	// N is the number of samples in the row (packed rows hold several;
	// 0 means 1).
	N int
	// segments are the packed segment ids (nil: one document).
	segments []int32
	// Instruction is InstructBLIP's instruction in Q-Former tokens (nil
	// for the other formats).
	Instruction []int32
	// ImageKey identifies the row's image by its bytes (imageKey), so
	// that rows showing one image are not each other's negatives in
	// BLIP-2's ITC and ITM; 0: not tracked.
	ImageKey uint64
}

// imageKey is a 48-bit FNV-1a hash of an image's encoded bytes, never 0
// (48 bits: the key crosses ranks as two float32-exact halves).
func imageKey(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	k := h.Sum64() & (1<<48 - 1)
	if k == 0 {
		k = 1
	}
	return k
}

// rowBuilder turns samples into rows for one stage.
type rowBuilder struct {
	format    Format
	kinds     []shard.Kind
	tok       tokenizer.Tokenizer
	cfg       models.Config // the stage's model config (image size, special ids)
	maxLen    int
	imageSize int
	augment   bool // random resized crop + flip (BLIP-2 pre-training)
	// understand forces LWM's vision → text order (evaluation).
	understand bool
	seed       uint64
	vq         *vqgan.VQGAN // LWM's frozen image tokenizer
}

func (b *rowBuilder) enc(s string) []int32 {
	ids := b.tok.Encode(s)
	out := make([]int32, len(ids))
	for i, v := range ids {
		out[i] = int32(v)
	}
	return out
}

// imagePositions is the number of LLM positions an image takes.
func (b *rowBuilder) imagePositions() int {
	switch b.format {
	case FormatQwen:
		return b.cfg.Queries + 2
	case FormatLLaVA:
		return b.cfg.TokensPerImage()
	}
	return 0
}

// build turns the sample at stream position pos into a row. kind is the
// sample's dataset kind.
func (b *rowBuilder) build(kind shard.Kind, s shard.Sample, pos int64) (row, error) {
	r := row{ID: s.ID, Pos: pos}
	rng := rand.New(rand.NewPCG(b.seed, uint64(pos)))
	sp := b.cfg.Special
	switch b.format {
	case FormatQFormerCaption:
		if kind != shard.KindImageText {
			return r, fmt.Errorf("sample %s: kind %s: BLIP-2 stage 1 reads image-text pairs", s.ID, kind)
		}
		img, err := b.image(s.Image, rng)
		if err != nil {
			return r, fmt.Errorf("sample %s: %w", s.ID, err)
		}
		r.Images = []*kernels.Tensor{img}
		r.Tokens = append([]int32{sp.BOS}, clip(b.enc(s.Caption), min(b.maxLen, 32)-1)...)
		r.ImageKey = imageKey(s.Image.Data)
		return r, nil
	case FormatSoftPromptCaption:
		if kind != shard.KindImageText {
			return r, fmt.Errorf("sample %s: kind %s: BLIP-2 stage 2 reads image-text pairs", s.ID, kind)
		}
		img, err := b.image(s.Image, rng)
		if err != nil {
			return r, fmt.Errorf("sample %s: %w", s.ID, err)
		}
		r.Images = []*kernels.Tensor{img}
		r.Tokens = append(append([]int32{sp.BOS}, clip(b.enc(s.Caption), min(b.maxLen, 32)-2)...), sp.EOS)
		r.Loss = fill(len(r.Tokens), true)
		r.Prefixed = true
		return r, nil
	case FormatQwen, FormatLLaVA:
		return b.buildLM(kind, s, r, rng)
	case FormatInstruction:
		return b.buildInstruction(kind, s, r, rng)
	case FormatLWM:
		return b.buildLWM(kind, s, r, rng)
	case FormatImage:
		if s.Image == nil {
			return r, fmt.Errorf("sample %s: kind %s: a VQGAN stage reads samples with an image", s.ID, kind)
		}
		px, err := decode(s.Image)
		if err != nil {
			return r, fmt.Errorf("sample %s: %w", s.ID, err)
		}
		n := b.cfg.VQGAN.ImageSize
		x := resize(px, n, n, nil)
		for i := range x.Data {
			x.Data[i] = x.Data[i]*2 - 1
		}
		r.Images = []*kernels.Tensor{kernels.New(x.Data, 3, n, n)}
		return r, nil
	}
	return r, fmt.Errorf("trainer: unknown format %d", b.format)
}

// seg is a piece of an LM row: text with a loss flag, or an image.
type seg struct {
	text  string
	loss  bool
	image *shard.Image
}

func (b *rowBuilder) buildLM(kind shard.Kind, s shard.Sample, r row, rng *rand.Rand) (row, error) {
	var segs []seg
	switch kind {
	case shard.KindImageText:
		// Alignment data: <image> then the caption (LLaVA preprocess_plain;
		// Qwen-VL "Picture 1: <img>…</img>" then the caption).
		segs = []seg{{image: s.Image}, {text: s.Caption, loss: true}}
	case shard.KindInterleaved:
		// Original document order, images before the text they precede
		// (VILA §2, Fig. 4).
		for _, it := range s.Items {
			if it.Image != nil {
				segs = append(segs, seg{image: it.Image})
			} else {
				segs = append(segs, seg{text: it.Text, loss: true})
			}
		}
	case shard.KindText:
		segs = []seg{{text: s.Text, loss: true}}
	case shard.KindConversation:
		// Loss on assistant turns only (Qwen-VL finetune.py preprocess,
		// LLaVA Vicuna template); images at their <image> placeholders.
		imgs := s.Images
		for _, t := range s.Turns {
			prefix := t.Role + ": "
			segs = append(segs, seg{text: prefix, loss: false})
			parts := strings.Split(t.Text, tokenizer.Image)
			for i, p := range parts {
				if i > 0 {
					if len(imgs) == 0 {
						return r, fmt.Errorf("sample %s: turns: more <image> placeholders than images", s.ID)
					}
					im := imgs[0]
					imgs = imgs[1:]
					segs = append(segs, seg{image: &im})
				}
				if p != "" {
					segs = append(segs, seg{text: p, loss: t.Loss})
				}
			}
			segs = append(segs, seg{text: "\n", loss: t.Loss})
		}
	default:
		return r, fmt.Errorf("sample %s: kind %s: this stage reads image-text, interleaved, text or conversation samples", s.ID, kind)
	}
	sp := b.cfg.Special
	per := b.imagePositions()
	used := 0
	for _, sg := range segs {
		if sg.image != nil {
			if used+per+1 > b.maxLen {
				break // an image that does not fit is left out with the rest
			}
			img, err := b.image(sg.image, rng)
			if err != nil {
				return r, fmt.Errorf("sample %s: %w", s.ID, err)
			}
			r.Images = append(r.Images, img)
			if b.format == FormatQwen {
				r.Tokens = append(r.Tokens, sp.ImgStart, sp.ImgEnd)
				r.Loss = append(r.Loss, false, false)
			} else {
				r.Tokens = append(r.Tokens, sp.Image)
				r.Loss = append(r.Loss, false)
			}
			used += per
			continue
		}
		ids := b.enc(sg.text)
		room := b.maxLen - 1 - used
		if room <= 0 {
			break
		}
		ids = clip(ids, room)
		r.Tokens = append(r.Tokens, ids...)
		r.Loss = append(r.Loss, fill(len(ids), sg.loss)...)
		used += len(ids)
	}
	r.Tokens = append(r.Tokens, sp.EOS)
	r.Loss = append(r.Loss, r.Loss[len(r.Loss)-1] || kind != shard.KindConversation)
	return r, nil
}

func (b *rowBuilder) buildLWM(kind shard.Kind, s shard.Sample, r row, rng *rand.Rand) (row, error) {
	sp := b.cfg.Special
	add := func(ids []int32, loss, vision bool) {
		r.Tokens = append(r.Tokens, ids...)
		r.Loss = append(r.Loss, fill(len(ids), loss)...)
		r.Vision = append(r.Vision, fill(len(ids), vision)...)
	}
	switch kind {
	case shard.KindText:
		add([]int32{sp.BOS}, false, false)
		add(clip(b.enc(s.Text), b.maxLen-2), true, false)
		add([]int32{sp.EOS}, true, false)
		return r, nil
	case shard.KindImageText, shard.KindVideoText:
		frames := []shard.Image{}
		if kind == shard.KindImageText {
			if s.Image == nil {
				return r, fmt.Errorf("sample %s: image: missing", s.ID)
			}
			frames = append(frames, *s.Image)
		} else {
			frames = s.Frames
		}
		var codes [][]int32
		for i := range frames {
			c, err := b.codes(&frames[i])
			if err != nil {
				return r, fmt.Errorf("sample %s: frame %d: %w", s.ID, i, err)
			}
			codes = append(codes, c)
		}
		// Fit the context: keep as many frames as fit (uniform frame
		// subsampling in LWM's data.py max_n_frames).
		per := len(codes[0]) + 1
		for len(codes) > 1 && 2+len(codes)*per+4 > b.maxLen {
			codes = codes[:len(codes)-1]
		}
		vids, vflags := models.LWMVision(b.cfg, codes)
		text := b.enc(s.Caption)
		text = clip(text, max(1, b.maxLen-len(vids)-2))
		// Half the samples are understanding (vision → text), half
		// generation (text → vision): LWM randomises the field order.
		understand := b.understand || rng.IntN(2) == 0
		add([]int32{sp.BOS}, false, false)
		if understand {
			r.Tokens = append(r.Tokens, vids...)
			r.Loss = append(r.Loss, fill(len(vids), false)...)
			r.Vision = append(r.Vision, vflags...)
			add(text, true, false)
			add([]int32{sp.EOS}, true, false)
		} else {
			add(text, false, false)
			r.Tokens = append(r.Tokens, vids...)
			// Loss on the codes (and <eof>/<eov>), not on the text
			// delimiters LWMVision puts around them.
			r.Loss = append(r.Loss, vflags...)
			r.Vision = append(r.Vision, vflags...)
			add([]int32{sp.EOS}, false, false)
		}
		if len(r.Tokens) > b.maxLen {
			return r, fmt.Errorf("sample %s: %d tokens with one frame, more than the %d-token context", s.ID, len(r.Tokens), b.maxLen)
		}
		return r, nil
	}
	return r, fmt.Errorf("sample %s: kind %s: LWM reads text, image-text or video-text samples", s.ID, kind)
}

// codes tokenises one image with the frozen VQGAN.
func (b *rowBuilder) codes(im *shard.Image) ([]int32, error) {
	px, err := decode(im)
	if err != nil {
		return nil, err
	}
	n := b.vq.Cfg.ImageSize
	x := resize(px, n, n, nil)
	for i := range x.Data {
		x.Data[i] = x.Data[i]*2 - 1 // [-1, 1] as LWM's _process_frame
	}
	return b.vq.Tokenize(kernels.New(x.Data, 1, 3, n, n))[0], nil
}

// image decodes an image to a normalised [3, S, S] tensor, with a random
// resized crop (area 0.5–1) and horizontal flip when augmenting (LAVIS
// blip2_image_train).
func (b *rowBuilder) image(im *shard.Image, rng *rand.Rand) (*kernels.Tensor, error) {
	if im == nil {
		return nil, fmt.Errorf("image: missing")
	}
	px, err := decode(im)
	if err != nil {
		return nil, err
	}
	var crop *cropBox
	if b.augment {
		w, h := px.Bounds().Dx(), px.Bounds().Dy()
		scale := 0.5 + 0.5*rng.Float64()
		side := max(1, int(float64(min(w, h))*sqrt(scale)))
		crop = &cropBox{x0: rng.IntN(w - side + 1), y0: rng.IntN(h - side + 1), side: side, flip: rng.IntN(2) == 1}
	}
	x := resize(px, b.imageSize, b.imageSize, crop)
	n := b.imageSize * b.imageSize
	for c := 0; c < 3; c++ {
		for i := 0; i < n; i++ {
			x.Data[c*n+i] = (x.Data[c*n+i] - clipMean[c]) / clipStd[c]
		}
	}
	return x, nil
}

func sqrt(x float64) float64 {
	// Newton's method is plenty for a crop side.
	z := x
	for i := 0; i < 20; i++ {
		z = 0.5 * (z + x/z)
	}
	return z
}

type cropBox struct {
	x0, y0, side int
	flip         bool
}

func decode(im *shard.Image) (image.Image, error) {
	px, _, err := image.Decode(bytes.NewReader(im.Data))
	if err != nil {
		return nil, fmt.Errorf("image (%s, %dx%d): %w", im.Format, im.Width, im.Height, err)
	}
	return px, nil
}

// resize samples px (or a square crop of it) bilinearly to a [3, h, w]
// tensor of values in [0, 1].
func resize(px image.Image, w, h int, crop *cropBox) *kernels.Tensor {
	bd := px.Bounds()
	x0, y0, sw, sh := bd.Min.X, bd.Min.Y, bd.Dx(), bd.Dy()
	flip := false
	if crop != nil {
		x0, y0, sw, sh, flip = bd.Min.X+crop.x0, bd.Min.Y+crop.y0, crop.side, crop.side, crop.flip
	}
	out := kernels.Zeros(3, h, w)
	at := func(x, y int) [3]float32 {
		x = min(max(x, 0), sw-1)
		y = min(max(y, 0), sh-1)
		r, g, bl, _ := px.At(x0+x, y0+y).RGBA()
		return [3]float32{float32(r) / 65535, float32(g) / 65535, float32(bl) / 65535}
	}
	for i := 0; i < h; i++ {
		fy := (float64(i)+0.5)*float64(sh)/float64(h) - 0.5
		yi := int(fy)
		if fy < 0 {
			yi = -1
		}
		dy := float32(fy - float64(yi))
		for j := 0; j < w; j++ {
			jj := j
			if flip {
				jj = w - 1 - j
			}
			fx := (float64(jj)+0.5)*float64(sw)/float64(w) - 0.5
			xi := int(fx)
			if fx < 0 {
				xi = -1
			}
			dx := float32(fx - float64(xi))
			a, bb, c, d := at(xi, yi), at(xi+1, yi), at(xi, yi+1), at(xi+1, yi+1)
			for ch := 0; ch < 3; ch++ {
				v := (a[ch]*(1-dx)+bb[ch]*dx)*(1-dy) + (c[ch]*(1-dx)+d[ch]*dx)*dy
				out.Data[ch*h*w+i*w+j] = v
			}
		}
	}
	return out
}

func clip(ids []int32, n int) []int32 {
	if n < 0 {
		n = 0
	}
	if len(ids) > n {
		return ids[:n]
	}
	return ids
}

func fill(n int, v bool) []bool {
	out := make([]bool, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// packRows packs rows greedily in order into rows of at most length
// tokens (shard.Pack's rule: a row that does not fit starts a new one; a
// longer row is cut), with segment ids 1, 2, … per packed row and no
// padding (the model masks ragged rows itself). The vision flags travel
// with the tokens.
func packRows(rows []row, length int) []row {
	var out []row
	var cur *row
	var segID int32
	var segs [][]int32
	for _, r := range rows {
		n := min(len(r.Tokens), length)
		if cur == nil || len(cur.Tokens)+n > length {
			out = append(out, row{ID: r.ID, Pos: r.Pos, N: 0})
			segs = append(segs, nil)
			cur = &out[len(out)-1]
			segID = 0
		} else {
			cur.ID += "+" + r.ID
		}
		segID++
		cur.N++
		cur.Tokens = append(cur.Tokens, r.Tokens[:n]...)
		cur.Loss = append(cur.Loss, r.Loss[:n]...)
		if r.Vision != nil {
			cur.Vision = append(cur.Vision, r.Vision[:n]...)
		} else {
			cur.Vision = append(cur.Vision, make([]bool, n)...)
		}
		cur.Images = append(cur.Images, r.Images...)
		s := &segs[len(segs)-1]
		for i := 0; i < n; i++ {
			*s = append(*s, segID)
		}
	}
	for i := range out {
		out[i].segments = segs[i]
	}
	return out
}

// trainedTokens counts the positions whose prediction the model trains in
// r: loss-flagged tokens that have a predecessor in their segment (or any
// token of a prefixed row). It mirrors models' target rule (seq.go) and is
// the normaliser of PerToken losses.
func trainedTokens(r row) int {
	n := 0
	for t := range r.Tokens {
		if r.Loss != nil && !r.Loss[t] {
			continue
		}
		if t == 0 {
			if r.Prefixed {
				n++
			}
			continue
		}
		if r.segments != nil && r.segments[t] != r.segments[t-1] {
			continue
		}
		n++
	}
	return n
}

// batch assembles rows into a models.Batch.
func assemble(rows []row, seed uint64) (*models.Batch, error) {
	b := &models.Batch{Seed: seed}
	var imgs []*kernels.Tensor
	anyLoss, anyVision, anySeg, anyKey, anyInstr := false, false, false, false, false
	for _, r := range rows {
		anyInstr = anyInstr || r.Instruction != nil
		anyKey = anyKey || r.ImageKey != 0
		anyLoss = anyLoss || r.Loss != nil
		anyVision = anyVision || r.Vision != nil
		anySeg = anySeg || r.segments != nil
	}
	for _, r := range rows {
		b.Tokens = append(b.Tokens, r.Tokens)
		if anyInstr {
			if r.Instruction == nil {
				return nil, fmt.Errorf("batch: row %s has no instruction, and others of its batch have one", r.ID)
			}
			b.Instruction = append(b.Instruction, r.Instruction)
		}
		if anyKey {
			b.ImageKeys = append(b.ImageKeys, r.ImageKey)
		}
		if anyLoss {
			l := r.Loss
			if l == nil {
				l = fill(len(r.Tokens), true)
			}
			b.Loss = append(b.Loss, l)
		}
		if anyVision {
			v := r.Vision
			if v == nil {
				v = make([]bool, len(r.Tokens))
			}
			b.Vision = append(b.Vision, v)
		}
		if anySeg {
			s := r.segments
			if s == nil {
				s = make([]int32, len(r.Tokens))
			}
			b.Segments = append(b.Segments, s)
		}
		imgs = append(imgs, r.Images...)
	}
	if len(imgs) > 0 {
		c, h, w := imgs[0].Shape[0], imgs[0].Shape[1], imgs[0].Shape[2]
		data := make([]float32, 0, len(imgs)*c*h*w)
		for i, im := range imgs {
			if len(im.Data) != c*h*w {
				return nil, fmt.Errorf("batch: image %d of row %d has shape %v, want [%d %d %d]", i, i, im.Shape, c, h, w)
			}
			data = append(data, im.Data...)
		}
		b.Images = kernels.New(data, len(imgs), c, h, w)
	}
	return b, nil
}
