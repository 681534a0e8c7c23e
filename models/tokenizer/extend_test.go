package tokenizer

import (
	"slices"
	"testing"
)

func TestWithSpecial(t *testing.T) {
	base, err := OpenDir("testdata/hf/llama")
	if err != nil {
		t.Fatal(err)
	}
	ext := WithSpecial(base, DefaultSpecial)
	e, ok := ext.(*Extended)
	if !ok {
		t.Fatalf("nothing added to %T", base)
	}
	n := base.VocabSize()
	if ext.VocabSize() != n+len(e.Added()) {
		t.Fatalf("vocab %d, base %d + %d added", ext.VocabSize(), n, len(e.Added()))
	}
	// Tokens the base has keep their ids (this fixture has <image>, and
	// its own BOS answers <bos>).
	for _, s := range []string{Image, BOS} {
		want, _ := base.TokenID(s)
		if got, _ := ext.TokenID(s); got != want || got >= n {
			t.Errorf("%s = %d, the base's is %d", s, got, want)
		}
	}
	dec, ok := ext.TokenID(Dec)
	ie, ok2 := ext.TokenID(ImgStart)
	if !ok || !ok2 || dec < n || ie < n || slices.Contains(e.Added(), Image) {
		t.Fatalf("[DEC] = %d, <img> = %d, added %v: want new ids after the base's %d", dec, ie, e.Added(), n)
	}
	img, _ := ext.TokenID(Image)
	text := "a cat[DEC] on a mat<img><image>"
	ids := ext.Encode(text)
	want := append(base.Encode("a cat"), dec)
	want = append(want, base.Encode(" on a mat")...)
	want = append(want, ie)
	want = append(want, base.Encode("<image>")...)
	if !slices.Equal(ids, want) || want[len(want)-1] != img {
		t.Fatalf("Encode(%q) = %v, want %v", text, ids, want)
	}
	got, err := ext.Decode(ids[len(base.Encode("a cat")):])
	if err != nil {
		t.Fatal(err)
	}
	if got[:len("[DEC]")] != "[DEC]" {
		t.Errorf("Decode = %q", got)
	}
	if s, _ := ext.Token(dec); s != Dec {
		t.Errorf("Token(%d) = %q", dec, s)
	}
	if sp := ext.Specials(); sp.Tokens[len(sp.Tokens)-1].Content != e.Added()[len(e.Added())-1] {
		t.Errorf("Specials lacks the added tokens: %+v", sp.Tokens)
	}
	if _, err := ext.Decode([]int{ext.VocabSize()}); err == nil {
		t.Error("Decode of an id past the vocabulary succeeded")
	}
	if WithSpecial(base, nil) != base {
		t.Error("WithSpecial with nothing to add must return the base")
	}
}
