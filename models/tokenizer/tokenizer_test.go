package tokenizer

import (
	"bytes"
	"fmt"
	"math/rand"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func corpusOf(texts ...string) *Corpus {
	c := NewCorpus(DefaultSpecial)
	for _, t := range texts {
		c.Add([]byte(t))
	}
	return c
}

func TestPretokenize(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"hello world", []string{"hello", " world"}},
		{"a  b", []string{"a", " ", " b"}},
		{"x=42;\n\ny", []string{"x", "=", "42", ";", "\n\n", "y"}},
		{"  ", []string{"  "}},
		{" trailing ", []string{" trailing", " "}},
		{"héllo wörld", []string{"héllo", " wörld"}},
		{"abc123def", []string{"abc", "123", "def"}},
		{"a !!b", []string{"a", " !!", "b"}},
	}
	for _, tc := range tests {
		var got []string
		for _, w := range pretokenize([]byte(tc.in)) {
			got = append(got, string(w))
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("pretokenize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestTrainHandWorked checks the merges on a corpus small enough to follow
// by hand: "aaab" ×2 and "ab" ×3.
//
//	pairs: (a,a)=4 (a,b)=5  → merge (a,b)=256: words "aa"+256 ×2, 256 ×3
//	pairs: (a,a)=2 (a,256)=2 → tie, smaller pair (97,97) wins → 257
//	pairs: (257,256)=2        → 258
func TestTrainHandWorked(t *testing.T) {
	c := NewCorpus(nil)
	c.counts = map[string]int{"aaab": 2, "ab": 3}
	tok, err := Train(TrainConfig{VocabSize: 256 + 3, Special: []string{}}, c)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]int{{'a', 'b'}, {'a', 'a'}, {257, 256}}
	if got := tok.Merges(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Train(aaab×2, ab×3) merges = %v, want %v", got, want)
	}
	if got := tok.Encode("aaab"); !reflect.DeepEqual(got, []int{258}) {
		t.Errorf("Encode(aaab) = %v, want [258]", got)
	}
	if got := tok.Encode("aaaab"); !reflect.DeepEqual(got, []int{257, 'a', 256}) {
		// ranks: (a,b)=0 first → a a a 256; then (a,a)=1 left to right → 257 a 256
		t.Errorf("Encode(aaaab) = %v, want [257 97 256]", got)
	}
}

func randomText(r *rand.Rand, n int) string {
	words := []string{"the", "cat", "sat", "on", "a", "mat", "dog", "ate", "42", "7", "!", "image", "of", "über", "naïve", "aaa", "ab"}
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString([]string{" ", " ", " ", "  ", "\n", ", "}[r.Intn(6)])
		}
		b.WriteString(words[r.Intn(len(words))])
	}
	return b.String()
}

func TestTrainMatchesNaive(t *testing.T) {
	for seed := int64(0); seed < 6; seed++ {
		r := rand.New(rand.NewSource(seed))
		c1, c2 := NewCorpus(DefaultSpecial), NewCorpus(DefaultSpecial)
		for i := 0; i < 20; i++ {
			s := randomText(r, 30)
			c1.Add([]byte(s))
			c2.Add([]byte(s))
		}
		cfg := TrainConfig{VocabSize: 256 + len(DefaultSpecial) + 60}
		fast, err := Train(cfg, c1)
		if err != nil {
			t.Fatal(err)
		}
		naive, err := TrainReference(cfg, c2)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast.Merges(), naive.Merges()) {
			t.Errorf("seed %d: Train merges differ from TrainReference:\n got %v\nwant %v", seed, fast.Merges(), naive.Merges())
		}
	}
}

func TestTrainDeterministic(t *testing.T) {
	text := randomText(rand.New(rand.NewSource(9)), 500)
	a, err := Train(TrainConfig{VocabSize: 400}, corpusOf(text))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Train(TrainConfig{VocabSize: 400}, corpusOf(text))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Merges(), b.Merges()) {
		t.Fatal("two trainings on the same corpus gave different merges")
	}
	if len(a.Merges()) == 0 {
		t.Fatal("no merges learned")
	}
	// Training shortens the encoding of its own corpus.
	if n := len(a.Encode(text)); n >= len(text)/2 {
		t.Errorf("Encode(training text) has %d ids for %d bytes; want fewer than half", n, len(text))
	}
}

func TestTrainVocabTooSmall(t *testing.T) {
	_, err := Train(TrainConfig{VocabSize: 100}, corpusOf("x"))
	if err == nil || !strings.Contains(err.Error(), "vocab size 100") {
		t.Fatalf("Train(VocabSize 100) error = %v, want one naming the vocab size", err)
	}
}

func TestSpecialTokens(t *testing.T) {
	tok, err := Train(TrainConfig{VocabSize: 300}, corpusOf("a picture <image> of a cat", "<img></img>"))
	if err != nil {
		t.Fatal(err)
	}
	img, ok := tok.TokenID(Image)
	if !ok {
		t.Fatal("TokenID(<image>) not found")
	}
	ids := tok.Encode("see<image>here</img>")
	found := 0
	for _, id := range ids {
		if id == img {
			found++
		}
	}
	if found != 1 {
		t.Errorf("Encode(see<image>here</img>) = %v: <image> id %d appears %d times, want 1", ids, img, found)
	}
	end, _ := tok.TokenID(ImgEnd)
	if ids[len(ids)-1] != end {
		t.Errorf("Encode(...</img>) last id = %d, want </img> id %d", ids[len(ids)-1], end)
	}
	for _, sp := range DefaultSpecial {
		id, ok := tok.TokenID(sp)
		if !ok {
			t.Errorf("TokenID(%q) missing", sp)
			continue
		}
		if got := tok.Encode(sp); !reflect.DeepEqual(got, []int{id}) {
			t.Errorf("Encode(%q) = %v, want [%d]", sp, got, id)
		}
	}
	// Without special parsing the text becomes ordinary bytes.
	for _, id := range tok.EncodeOrdinary("<image>") {
		if id >= 256+len(tok.Merges()) {
			t.Errorf("EncodeOrdinary(<image>) produced special id %d", id)
		}
	}
	// The corpus runs out of pairs seen twice before 300 ids.
	if got := tok.VocabSize(); got > 300 || got != 256+len(tok.Merges())+len(DefaultSpecial) {
		t.Errorf("VocabSize() = %d, want 256 + %d merges + %d specials (at most 300)", got, len(tok.Merges()), len(DefaultSpecial))
	}
}

func TestRoundTripAnyBytes(t *testing.T) {
	tok, err := Train(TrainConfig{VocabSize: 360}, corpusOf(randomText(rand.New(rand.NewSource(1)), 300)))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 200; i++ {
		b := make([]byte, r.Intn(40))
		r.Read(b)
		if i%3 == 0 {
			b = append(b, []byte("<eof>[DEC] the cat")...)
		}
		got, err := tok.Decode(tok.Encode(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if got != string(b) {
			t.Fatalf("Decode(Encode(%q)) = %q", b, got)
		}
	}
}

func TestDecodeBadID(t *testing.T) {
	tok, _ := NewBPE(nil, []string{"<pad>"})
	if _, err := tok.Decode([]int{1, 257}); err == nil || !strings.Contains(err.Error(), "ids[1] = 257") {
		t.Errorf("Decode([1 257]) error = %v, want one naming ids[1] = 257", err)
	}
	if _, err := tok.Decode([]int{-1}); err == nil {
		t.Error("Decode([-1]) succeeded")
	}
}

func TestSaveLoad(t *testing.T) {
	tok, err := Train(TrainConfig{VocabSize: 320}, corpusOf(randomText(rand.New(rand.NewSource(3)), 200)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := Save(path, tok); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Merges(), tok.Merges()) || !reflect.DeepEqual(back.Special(), tok.Special()) {
		t.Fatal("Load(Save(tok)) differs from tok")
	}
	s := "the cat <image> sat"
	if !reflect.DeepEqual(back.Encode(s), tok.Encode(s)) {
		t.Errorf("loaded tokenizer encodes %q as %v, original as %v", s, back.Encode(s), tok.Encode(s))
	}
}

func TestUnmarshalErrors(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"format", `{"format":"x","pretokenizer":"loom-words-v1","vocab_size":256,"merges":[],"special_tokens":[]}`, `format: got "x"`},
		{"pretok", `{"format":"loom-bpe-v1","pretokenizer":"gpt2","vocab_size":256,"merges":[],"special_tokens":[]}`, `pretokenizer`},
		{"future id", `{"format":"loom-bpe-v1","pretokenizer":"loom-words-v1","vocab_size":257,"merges":[[1,256]],"special_tokens":[]}`, `merges[0]`},
		{"dup pair", `{"format":"loom-bpe-v1","pretokenizer":"loom-words-v1","vocab_size":258,"merges":[[1,2],[1,2]],"special_tokens":[]}`, `merges[1]`},
		{"vocab", `{"format":"loom-bpe-v1","pretokenizer":"loom-words-v1","vocab_size":9,"merges":[],"special_tokens":[]}`, `vocab_size`},
		{"dup special", `{"format":"loom-bpe-v1","pretokenizer":"loom-words-v1","vocab_size":258,"merges":[],"special_tokens":["<a>","<a>"]}`, `special_tokens[1]`},
		{"empty special", `{"format":"loom-bpe-v1","pretokenizer":"loom-words-v1","vocab_size":257,"merges":[],"special_tokens":[""]}`, `special_tokens[0]`},
		{"unknown field", `{"format":"loom-bpe-v1","extra":1}`, `unknown field`},
		{"trailing", `{"format":"loom-bpe-v1","pretokenizer":"loom-words-v1","vocab_size":256,"merges":[],"special_tokens":[]} {}`, `trailing`},
	}
	for _, tc := range tests {
		_, err := Unmarshal([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Unmarshal(%s) error = %v, want one containing %q", tc.name, tc.json, err, tc.want)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	tok, _ := Train(TrainConfig{VocabSize: 280}, corpusOf("the cat sat on the mat the cat"))
	good, _ := Marshal(tok)
	f.Add(good)
	f.Add([]byte(`{"format":"loom-bpe-v1","pretokenizer":"loom-words-v1","vocab_size":257,"merges":[[1,256]],"special_tokens":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Unmarshal(data)
		if err != nil {
			return
		}
		// Whatever loads must round-trip text and serialise again.
		s := "a <pad> cat\x00\xff"
		got, err := tok.Decode(tok.Encode(s))
		if err != nil || got != s {
			t.Fatalf("loaded tokenizer: Decode(Encode(%q)) = %q, %v", s, got, err)
		}
		again, err := Marshal(tok)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Unmarshal(again); err != nil {
			t.Fatalf("Marshal output does not load: %v", err)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	tok, _ := Train(TrainConfig{VocabSize: 320}, corpusOf(randomText(rand.New(rand.NewSource(4)), 200)))
	f.Add([]byte("the cat <image> sat"))
	f.Add([]byte{0, 0xff, ' ', ' '})
	f.Add([]byte("<eo<eof>v>"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids := tok.Encode(string(b))
		got, err := tok.Decode(ids)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal([]byte(got), b) {
			t.Fatalf("Decode(Encode(%q)) = %q", b, got)
		}
		for i, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("Encode(%q)[%d] = %d out of range", b, i, id)
			}
		}
	})
}

func ExampleTrain() {
	c := NewCorpus(DefaultSpecial)
	c.Add([]byte("the cat sat on the mat. the cat ate."))
	tok, err := Train(TrainConfig{VocabSize: 256 + len(DefaultSpecial) + 8}, c)
	if err != nil {
		panic(err)
	}
	ids := tok.Encode("<image> the cat")
	text, _ := tok.Decode(ids)
	fmt.Println(len(ids), text)
	// Output: 3 <image> the cat
}

func TestBenchTrain(t *testing.T) {
	tick := time.Unix(0, 0)
	now := func() time.Time { tick = tick.Add(time.Second); return tick } // fake clock: 1 s per call
	r, err := BenchTrain(1, 2000, 50, now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Merges != 50 || r.FastSec != 1 || r.ReferenceSec != 1 || r.Speedup != 1 {
		t.Errorf("BenchTrain = %+v, want 50 merges and 1 s each on the fake clock", r)
	}
	if a, b := SyntheticText(3, 100), SyntheticText(3, 100); a != b || len(strings.Fields(a)) != 100 {
		t.Errorf("SyntheticText is not deterministic or has %d words", len(strings.Fields(a)))
	}
}
