package models

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/models/tokenizer"
)

// tinyBatch builds a small, deterministic batch for a family's tiny preset.
func tinyBatch(t testing.TB, c Config, seed uint64) *Batch {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	img := func(n, size int) *kernels.Tensor {
		x := kernels.Zeros(n, 3, size, size)
		for i := range x.Data {
			x.Data[i] = float32(rng.NormFloat64())
		}
		return x
	}
	text := func(n int) []int32 {
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(rng.IntN(200)) + 1
		}
		return out
	}
	s := c.Special
	switch c.Family {
	case BLIP2:
		rows := [][]int32{append([]int32{s.BOS}, text(5)...), append([]int32{s.BOS}, text(3)...), append([]int32{s.BOS}, text(4)...)}
		return &Batch{Images: img(3, c.ImageSize), Tokens: rows, Seed: seed}
	case InstructBLIP:
		rows := [][]int32{text(5), text(3)}
		return &Batch{Images: img(2, c.ImageSize), Tokens: rows, Instruction: [][]int32{text(3), text(2)},
			Loss: [][]bool{{false, false, true, true, true}, {false, true, true}}}
	case QwenVL:
		// Row 0: an interleaved document with two images; row 1: one image.
		r0 := append(append(append([]int32{s.ImgStart, s.ImgEnd}, text(3)...), s.ImgStart, s.ImgEnd), text(2)...)
		r1 := append([]int32{s.ImgStart, s.ImgEnd}, text(4)...)
		return &Batch{Images: img(3, c.ImageSize), Tokens: [][]int32{r0, r1}}
	case LLaVA, VILA:
		r0 := append(append(append([]int32{s.Image}, text(3)...), s.Image), text(2)...)
		r1 := append(text(2), append([]int32{s.Image}, text(3)...)...)
		return &Batch{Images: img(3, c.ImageSize), Tokens: [][]int32{r0, r1}}
	case LWM:
		frames := [][]int32{make([]int32, 4), make([]int32, 4)}
		for _, f := range frames {
			for i := range f {
				f[i] = int32(rng.IntN(c.Codebook))
			}
		}
		vids, vflags := LWMVision(c, frames)
		r0 := append(text(3), vids...)
		f0 := append(make([]bool, 3), vflags...)
		r1 := text(6)
		return &Batch{Tokens: [][]int32{r0, r1}, Vision: [][]bool{f0, make([]bool, 6)}}
	case VQGAN:
		x := img(2, c.VQGAN.ImageSize)
		for i := range x.Data {
			x.Data[i] = float32(math.Tanh(float64(x.Data[i])))
		}
		return &Batch{Images: x}
	}
	t.Fatalf("no batch for %s", c.Family)
	return nil
}

func tinyModel(t testing.TB, f Family, seed uint64) (Model, Config) {
	t.Helper()
	c, err := Preset(f, "tiny")
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(c, seed)
	if err != nil {
		t.Fatalf("New(%s tiny): %v", f, err)
	}
	return m, c
}

func TestParamCountMatchesAllocation(t *testing.T) {
	for _, f := range Families {
		for _, stage := range []int{1, 2} {
			if stage == 2 && f != BLIP2 {
				continue
			}
			for _, size := range []string{"tiny", "small"} {
				c, err := Preset(f, size)
				if err != nil {
					t.Fatal(err)
				}
				if f == BLIP2 {
					c.Stage = stage
				}
				m, err := New(c, 1)
				if err != nil {
					t.Fatalf("New(%s %s stage %d): %v", f, size, stage, err)
				}
				if got, want := ParamCount(c), m.Params().Count(); got != want {
					t.Errorf("ParamCount(%s %s stage %d) = %d, built model has %d", f, size, stage, got, want)
				}
			}
		}
	}
}

func TestForwardTiny(t *testing.T) {
	for _, f := range Families {
		m, c := tinyModel(t, f, 1)
		b := tinyBatch(t, c, 1)
		out, err := m.Forward(kernels.NewTape(), b)
		if err != nil {
			t.Fatalf("%s: Forward: %v", f, err)
		}
		l := out.Loss.Item()
		if math.IsNaN(float64(l)) || l <= 0 {
			t.Errorf("%s: loss %v", f, l)
		}
		t.Logf("%s: %v", f, out.Terms)
	}
}

func TestWithTokenizer(t *testing.T) {
	c := tokenizer.NewCorpus(tokenizer.DefaultSpecial)
	c.Add([]byte("a photo of a cat on a mat, a photo of a dog"))
	tok, err := tokenizer.Train(tokenizer.TrainConfig{VocabSize: 300}, c)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := Preset(LLaVA, "tiny")
	cfg, err = cfg.WithTokenizer(tok)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := tok.TokenID(tokenizer.Image)
	if cfg.LLM.Vocab != tok.VocabSize() || cfg.Special.Image != int32(img) {
		t.Fatalf("WithTokenizer: vocab %d image id %d, tokenizer has %d and %d", cfg.LLM.Vocab, cfg.Special.Image, tok.VocabSize(), img)
	}
	m, err := New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode("<image> a photo of a cat<eos>")
	row := make([]int32, len(ids))
	for i, id := range ids {
		row[i] = int32(id)
	}
	if _, err := m.Forward(nil, &Batch{Images: kernels.Zeros(1, 3, 16, 16), Tokens: [][]int32{row}}); err != nil {
		t.Fatal(err)
	}
}
