package synth_test

import (
	"bytes"
	"image"
	"image/png"
	"reflect"
	"strings"
	"testing"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

func TestDeterministic(t *testing.T) {
	for _, k := range shard.Kinds {
		a, b := synth.Sample(k, 7, 3), synth.Sample(k, 7, 3)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("Sample(%s, 7, 3) differs between calls", k)
		}
		c := synth.Sample(k, 8, 3)
		if reflect.DeepEqual(a, c) {
			t.Errorf("Sample(%s, 7, 3) == Sample(%s, 8, 3): seed ignored", k, k)
		}
		if err := shard.ValidateSample(k, &a); err != nil {
			t.Errorf("Sample(%s) invalid: %v", k, err)
		}
	}
}

// TestCaptionMatchesPixels checks that the caption describes the picture:
// the centre pixel has the shape's colour and a corner the background's.
func TestCaptionMatchesPixels(t *testing.T) {
	for i := 0; i < 50; i++ {
		s := synth.Sample(shard.KindImageText, 1, i)
		img, err := png.Decode(bytes.NewReader(s.Image.Data))
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		if img.Bounds() != image.Rect(0, 0, s.Image.Width, s.Image.Height) {
			t.Fatalf("sample %d: bounds %v, stored %dx%d", i, img.Bounds(), s.Image.Width, s.Image.Height)
		}
		var fg, bg string
		for _, c := range synth.Colours {
			if strings.HasPrefix(s.Caption, "a "+c.Name+" ") {
				fg = c.Name
			}
			if strings.HasSuffix(s.Caption, " on a "+c.Name+" background") {
				bg = c.Name
			}
		}
		if fg == "" || bg == "" || fg == bg {
			t.Fatalf("sample %d: caption %q does not name two colours", i, s.Caption)
		}
		name := func(x, y int) string {
			r, g, b, _ := img.At(x, y).RGBA()
			for _, c := range synth.Colours {
				if uint8(r>>8) == c.RGB.R && uint8(g>>8) == c.RGB.G && uint8(b>>8) == c.RGB.B {
					return c.Name
				}
			}
			return "?"
		}
		counts := map[string]int{}
		for y := 0; y < s.Image.Height; y++ {
			for x := 0; x < s.Image.Width; x++ {
				counts[name(x, y)]++
			}
		}
		if counts[fg] == 0 || counts[bg] == 0 || len(counts) != 2 {
			t.Errorf("sample %d %q: pixel colours %v, want only %s and %s", i, s.Caption, counts, fg, bg)
		}
	}
}

func TestNoisyImagesAreLargeAndDecode(t *testing.T) {
	s := synth.SampleWith(shard.KindImageText, 1, 0, synth.Options{MinSide: 128, MaxSide: 128, Noise: 24})
	if s.Image.Width != 128 || len(s.Image.Data) < 20000 {
		t.Fatalf("noisy 128px image: %dx%d, %d bytes; want 128 px and > 20 KB", s.Image.Width, s.Image.Height, len(s.Image.Data))
	}
	if _, err := png.Decode(bytes.NewReader(s.Image.Data)); err != nil {
		t.Fatal(err)
	}
}
