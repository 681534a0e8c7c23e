package synth

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"strings"

	"github.com/loomtrain/loom/shard"
)

// Colour is a named RGB colour.
type Colour struct {
	Name string
	RGB  color.RGBA
}

// Colours are the palette shapes and backgrounds are drawn from.
var Colours = []Colour{
	{"red", color.RGBA{220, 40, 40, 255}},
	{"green", color.RGBA{40, 180, 60, 255}},
	{"blue", color.RGBA{40, 70, 220, 255}},
	{"yellow", color.RGBA{235, 210, 40, 255}},
	{"purple", color.RGBA{140, 50, 170, 255}},
	{"orange", color.RGBA{245, 140, 30, 255}},
	{"white", color.RGBA{245, 245, 245, 255}},
	{"black", color.RGBA{20, 20, 20, 255}},
}

// Shapes are the shapes drawn.
var Shapes = []string{"circle", "square", "triangle"}

// Scene describes one picture: a shape of a colour on a background colour,
// centred at (CX, CY) with radius R, in a Size x Size image. Noise > 0 adds
// a deterministic per-pixel jitter of up to ±Noise to every channel, which
// makes the PNG about as large as a photograph of the same size.
type Scene struct {
	Shape     string
	Fg, Bg    Colour
	Size      int
	CX, CY, R int
	Noise     uint8
	NoiseSeed uint64
}

// Options shape generated images. The zero value gives 32-64 px images
// without noise.
type Options struct {
	MinSide, MaxSide int   // image side range in pixels (default 32-64)
	Noise            uint8 // per-pixel jitter, see Scene.Noise
	// SceneText makes text documents mix the sentences with scene
	// descriptions (the captions of random scenes), each described again
	// two sentences later, so that a language model pretrained on the text
	// knows the words captions use and to say what its context says, as a
	// real LLM knows the language of real captions (loom dev's text
	// pretraining).
	SceneText bool
}

// Caption describes the scene in words.
func (s Scene) Caption() string {
	return fmt.Sprintf("a %s %s on a %s background", s.Fg.Name, s.Shape, s.Bg.Name)
}

// RandomScene draws a scene from r: image side 32-64 px, distinct colours.
func RandomScene(r *rand.Rand) Scene { return randomScene(r, Options{}) }

func randomScene(r *rand.Rand, o Options) Scene {
	lo, hi := o.MinSide, o.MaxSide
	if lo <= 0 {
		lo = 32
	}
	if hi < lo {
		hi = max(lo, 64)
	}
	fg := r.IntN(len(Colours))
	bg := r.IntN(len(Colours) - 1)
	if bg >= fg {
		bg++
	}
	size := lo + r.IntN(hi-lo+1)
	rad := size/5 + r.IntN(size/5)
	return Scene{Shape: Shapes[r.IntN(len(Shapes))], Fg: Colours[fg], Bg: Colours[bg], Size: size,
		CX: rad + r.IntN(size-2*rad), CY: rad + r.IntN(size-2*rad), R: rad, Noise: o.Noise, NoiseSeed: r.Uint64()}
}

// Render draws the scene.
func (s Scene) Render() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, s.Size, s.Size))
	var nr *rand.Rand
	if s.Noise > 0 {
		nr = rand.New(rand.NewPCG(s.NoiseSeed, 7))
	}
	jitter := func(v uint8) uint8 {
		d := int(v) + nr.IntN(2*int(s.Noise)+1) - int(s.Noise)
		return uint8(min(max(d, 0), 255))
	}
	for y := 0; y < s.Size; y++ {
		for x := 0; x < s.Size; x++ {
			c := s.Bg.RGB
			if s.inside(x, y) {
				c = s.Fg.RGB
			}
			if nr != nil {
				c = color.RGBA{jitter(c.R), jitter(c.G), jitter(c.B), 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func (s Scene) inside(x, y int) bool {
	dx, dy := x-s.CX, y-s.CY
	switch s.Shape {
	case "circle":
		return dx*dx+dy*dy <= s.R*s.R
	case "square":
		return dx >= -s.R && dx <= s.R && dy >= -s.R && dy <= s.R
	default: // triangle pointing up: apex at (CX, CY-R), base at y = CY+R
		if dy < -s.R || dy > s.R {
			return false
		}
		half := (dy + s.R) / 2
		return dx >= -half && dx <= half
	}
}

// PNG encodes the scene as a shard.Image.
func (s Scene) PNG() shard.Image {
	var buf bytes.Buffer
	if err := png.Encode(&buf, s.Render()); err != nil {
		panic(err) // encoding an in-memory RGBA image cannot fail
	}
	return shard.Image{Format: "png", Width: s.Size, Height: s.Size, Data: buf.Bytes()}
}

var (
	subjects = []string{"The model", "A worker", "The coordinator", "Every shard", "The optimizer", "A reader", "The ring"}
	verbs    = []string{"reads", "writes", "checks", "sends", "packs", "shuffles", "counts", "stores"}
	objects  = []string{"the batch", "a checkpoint", "every token", "the index", "its gradients", "a new epoch", "the footer"}
	tails    = []string{"before the step ends.", "in a fixed order.", "without waiting.", "once per epoch.", "over the network.", "and moves on."}
)

// Sentence returns a random sentence.
func Sentence(r *rand.Rand) string {
	return fmt.Sprintf("%s %s %s %s", subjects[r.IntN(len(subjects))], verbs[r.IntN(len(verbs))],
		objects[r.IntN(len(objects))], tails[r.IntN(len(tails))])
}

// rng returns the generator of sample i under seed: samples are independent
// of each other, so any one can be regenerated alone.
func rng(seed uint64, i int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(i)*0x9E3779B97F4A7C15+1))
}

// Sample returns sample i of a synthetic dataset of kind under seed.
func Sample(kind shard.Kind, seed uint64, i int) shard.Sample {
	return SampleWith(kind, seed, i, Options{})
}

// SampleWith is Sample with image options.
func SampleWith(kind shard.Kind, seed uint64, i int, o Options) shard.Sample {
	r := rng(seed, i)
	RandomScene := func(r *rand.Rand) Scene { return randomScene(r, o) }
	id := fmt.Sprintf("%s-%08d", kind, i)
	switch kind {
	case shard.KindImageText:
		sc := RandomScene(r)
		im := sc.PNG()
		return shard.Sample{ID: id, Image: &im, Caption: sc.Caption()}
	case shard.KindInterleaved:
		s := shard.Sample{ID: id}
		n := 1 + r.IntN(3)
		for j := 0; j < n; j++ {
			sc := RandomScene(r)
			im := sc.PNG()
			s.Items = append(s.Items, shard.Item{Text: Sentence(r) + " Here is " + sc.Caption() + "."}, shard.Item{Image: &im})
		}
		s.Items = append(s.Items, shard.Item{Text: Sentence(r)})
		return s
	case shard.KindVideoText:
		sc := RandomScene(r)
		frames := 4 + r.IntN(5)
		s := shard.Sample{ID: id, Caption: fmt.Sprintf("a %s %s moving right on a %s background", sc.Fg.Name, sc.Shape, sc.Bg.Name)}
		for f := 0; f < frames; f++ {
			fr := sc
			fr.CX = sc.R + (sc.Size-2*sc.R)*f/(frames-1)
			s.Frames = append(s.Frames, fr.PNG())
			s.Timestamps = append(s.Timestamps, float64(f)*0.25)
		}
		return s
	case shard.KindText:
		var b strings.Builder
		n := 3 + r.IntN(20)
		last := ""
		for j := 0; j < n; j++ {
			if j > 0 {
				b.WriteByte(' ')
			}
			switch {
			case o.SceneText && j%4 == 1:
				last = RandomScene(r).Caption()
				b.WriteString(last + ".")
			case o.SceneText && j%4 == 3:
				// The scene described again: what a language model
				// learns from real text, that context tells what comes.
				b.WriteString("again, " + last + ".")
			default:
				b.WriteString(Sentence(r))
			}
		}
		return shard.Sample{ID: id, Text: b.String()}
	case shard.KindConversation:
		sc := RandomScene(r)
		return shard.Sample{ID: id, Images: []shard.Image{sc.PNG()}, Turns: []shard.Turn{
			{Role: "user", Text: "<image>\nWhat is in this picture?"},
			{Role: "assistant", Text: "It shows " + sc.Caption() + ".", Loss: true},
			{Role: "user", Text: "What colour is the " + sc.Shape + "?"},
			{Role: "assistant", Text: "It is " + sc.Fg.Name + ".", Loss: true},
		}}
	case shard.KindTokens:
		n := 8 + r.IntN(120)
		toks := make([]int32, n)
		for j := range toks {
			toks[j] = int32(r.IntN(8192))
		}
		return shard.Sample{ID: id, Tokens: toks}
	}
	panic(fmt.Sprintf("synth: unknown kind %q", kind))
}

// Write generates n samples of kind under seed and writes them as a dataset
// under prefix, through the same Writer as ingest.
func Write(ctx context.Context, store shard.ObjectStore, prefix string, kind shard.Kind, n int, seed uint64, opts shard.WriterOptions) (*shard.Index, error) {
	return WriteWith(ctx, store, prefix, kind, n, seed, Options{}, opts)
}

// WriteWith is Write with image options.
func WriteWith(ctx context.Context, store shard.ObjectStore, prefix string, kind shard.Kind, n int, seed uint64, o Options, opts shard.WriterOptions) (*shard.Index, error) {
	opts.Kind = kind
	w, err := shard.NewWriter(ctx, store, prefix, opts)
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		if err := w.Add(SampleWith(kind, seed, i, o)); err != nil {
			w.Abort()
			return nil, err
		}
	}
	return w.Close()
}
