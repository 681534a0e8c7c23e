package tokenizer

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

type pretokCase struct {
	Text   string   `json:"text"`
	Pieces []string `json:"pieces"`
}

func loadPretokFixture(t *testing.T) []pretokCase {
	t.Helper()
	b, err := os.ReadFile("testdata/loom_pretok.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Pattern string       `json:"pattern"`
		Cases   []pretokCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.Pattern != loomPattern {
		t.Fatalf("testdata/loom_pretok.json was cut with another pattern:\n got %s\nwant %s\nrerun testdata/gen_loom_pretok.py", f.Pattern, loomPattern)
	}
	return f.Cases
}

// The regex HFFiles writes cuts text (as Python's re does, lookahead
// included) exactly where Loom's pre-tokenizer does.
func TestLoomPatternMatchesPython(t *testing.T) {
	for _, c := range loadPretokFixture(t) {
		var got []string
		for _, p := range pretokenize([]byte(c.Text)) {
			got = append(got, string(p))
		}
		if !reflect.DeepEqual(got, c.Pieces) {
			t.Errorf("pretokenize(%q)\n got %q\nwant %q (Python re with loomPattern)", c.Text, got, c.Pieces)
		}
	}
}

func hfRoundTrip(t *testing.T, bpe *BPE) Pretrained {
	t.Helper()
	files, err := HFFiles(bpe)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]byte{}
	for _, f := range files {
		byName[f.Name] = f.Data
	}
	hf, err := OpenFiles("mem", func(name string) ([]byte, error) { return byName[name], nil })
	if err != nil {
		t.Fatalf("OpenFiles(HFFiles(t)): %v\n%s", err, byName["tokenizer.json"][:min(2000, len(byName["tokenizer.json"]))])
	}
	return hf
}

// A Loom tokenizer written as tokenizer.json encodes every text to the same
// ids when read back as a Hugging Face tokenizer, special tokens included.
func TestHFFilesEncodesTheSame(t *testing.T) {
	corpus := SyntheticText(3, 4000) + " naïve café 日本語 🙂 x2y3 a+b=c\t\n  x <image> y"
	c := NewCorpus(DefaultSpecial)
	c.Add([]byte(corpus))
	bpe, err := Train(TrainConfig{VocabSize: 700}, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(bpe.Merges()) < 300 {
		t.Fatalf("only %d merges learned; the test wants a real vocabulary", len(bpe.Merges()))
	}
	hf := hfRoundTrip(t, bpe)
	if hf.VocabSize() != bpe.VocabSize() {
		t.Fatalf("VocabSize: hf %d, loom %d", hf.VocabSize(), bpe.VocabSize())
	}
	for _, s := range DefaultSpecial {
		a, okA := bpe.TokenID(s)
		b, okB := hf.TokenID(s)
		if a != b || okA != okB {
			t.Errorf("TokenID(%q): hf %d %v, loom %d %v", s, b, okB, a, okA)
		}
	}
	sp := hf.Specials()
	if bos, _ := bpe.TokenID(BOS); sp.BOS != bos || sp.AddBOS || sp.AddEOS {
		t.Errorf("Specials: BOS %d (want %d), AddBOS %v, AddEOS %v", sp.BOS, bos, sp.AddBOS, sp.AddEOS)
	}
	texts := []string{corpus[:3000], "<bos>a red circle on a blue background<eos>", "<image><img></img> [DEC] <pad>"}
	for _, c := range loadPretokFixture(t) {
		texts = append(texts, c.Text)
	}
	for _, w := range strings.Fields(corpus[:20000]) {
		texts = append(texts, " "+w, w+"  ")
	}
	for _, text := range texts {
		want := bpe.Encode(text)
		got := hf.Encode(text)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Encode(%q)\n   hf %v\n loom %v", text, got, want)
		}
		d, err := hf.Decode(want)
		if err != nil || d != text {
			t.Fatalf("hf Decode(Encode(%q)) = %q, %v", text, d, err)
		}
	}
	// No merges: Loom's byte-level tokenizer, as jobs without a tokenizer train with.
	bytesOnly, err := NewBPE(nil, DefaultSpecial)
	if err != nil {
		t.Fatal(err)
	}
	hb := hfRoundTrip(t, bytesOnly)
	for _, text := range texts[:3] {
		if got, want := hb.Encode(text), bytesOnly.Encode(text); !reflect.DeepEqual(got, want) {
			t.Fatalf("byte-level Encode(%q)\n   hf %v\n loom %v", text[:min(len(text), 80)], got, want)
		}
	}
}

func TestHFFilesRefusesDuplicateTokens(t *testing.T) {
	a, b, c := int('a'), int('b'), int('c')
	// 257 = (ab)c and 259 = a(bc) are both "abc".
	bpe, err := NewBPE([][2]int{{a, b}, {256, c}, {b, c}, {a, 258}}, DefaultSpecial)
	if err != nil {
		t.Fatal(err)
	}
	_, err = HFFiles(bpe)
	if err == nil || !strings.Contains(err.Error(), `merges[3] makes "abc", as id 257 does`) {
		t.Fatalf("err = %v", err)
	}
}
