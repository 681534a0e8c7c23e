package tokenizer

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func openFixture(t testing.TB, name string) Pretrained {
	t.Helper()
	tok, err := OpenDir(filepath.Join("testdata", "hf", name))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func spFixture(t testing.TB, file string) *SentencePiece {
	t.Helper()
	tok, err := ParseSentencePiece(readModelFile(t, filepath.Join("testdata", "sp", file)))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSpecials(t *testing.T) {
	llamaTemplate := "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
	tests := []struct {
		name                string
		bos, eos, pad, unk  int
		addBOS, addEOS      bool
		template            string
		namedTemplates      []string
		wantTokens, special []string // contents of Tokens, and of those Special
	}{
		{"llama", 1, 2, -1, 0, true, false, llamaTemplate, []string{"default", "tool_use"},
			[]string{"<unk>", "<s>", "</s>", "<image>"}, []string{"<unk>", "<s>", "</s>"}},
		{"llama-metaspace", 1, 2, -1, 0, true, true, "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}\n", nil,
			[]string{"<unk>", "<s>", "</s>", "<image>"}, []string{"<unk>", "<s>", "</s>"}},
		{"gpt2", -1, -1, -1, -1, false, false, "", nil, []string{"<|endoftext|>"}, []string{"<|endoftext|>"}},
		{"qwen2", -1, 558, 556, -1, false, false, "", nil,
			[]string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}, []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openFixture(t, tc.name).Specials()
			if tc.name == "qwen2" {
				if !strings.Contains(s.ChatTemplate, "<|im_start|>") {
					t.Errorf("ChatTemplate = %q, want the ChatML template", s.ChatTemplate)
				}
				tc.template = s.ChatTemplate
			}
			if s.BOS != tc.bos || s.EOS != tc.eos || s.PAD != tc.pad || s.UNK != tc.unk {
				t.Errorf("BOS/EOS/PAD/UNK = %d/%d/%d/%d, want %d/%d/%d/%d", s.BOS, s.EOS, s.PAD, s.UNK, tc.bos, tc.eos, tc.pad, tc.unk)
			}
			if s.AddBOS != tc.addBOS || s.AddEOS != tc.addEOS {
				t.Errorf("AddBOS/AddEOS = %v/%v, want %v/%v", s.AddBOS, s.AddEOS, tc.addBOS, tc.addEOS)
			}
			if s.ChatTemplate != tc.template {
				t.Errorf("ChatTemplate = %q, want %q", s.ChatTemplate, tc.template)
			}
			var named []string
			for k := range s.ChatTemplates {
				named = append(named, k)
			}
			if len(named) != len(tc.namedTemplates) {
				t.Errorf("ChatTemplates = %v, want names %v", s.ChatTemplates, tc.namedTemplates)
			}
			var all, special []string
			for _, tk := range s.Tokens {
				all = append(all, tk.Content)
				if tk.Special {
					special = append(special, tk.Content)
				}
			}
			if !reflect.DeepEqual(all, tc.wantTokens) || !reflect.DeepEqual(special, tc.special) {
				t.Errorf("Tokens = %v (special %v), want %v (special %v)", all, special, tc.wantTokens, tc.special)
			}
		})
	}
	sp := spFixture(t, "bpe_identity.model").Specials()
	if sp.BOS != 1 || sp.EOS != 2 || sp.UNK != 0 || sp.PAD != -1 || !sp.AddBOS || sp.AddEOS {
		t.Errorf("bpe_identity.model Specials() = %+v, want BOS 1, EOS 2, UNK 0, PAD -1, AddBOS", sp)
	}
}

// TestAddedTokens checks the splitting at added tokens against the
// SentencePiece model the LLaMA fixtures were converted from (itself
// checked against the sentencepiece library): tokenizers normalises each
// side of an added token on its own, so with the legacy Prepend normaliser
// " b" after "<image>" becomes "▁▁b", and with Metaspace's prepend_scheme
// "first" only the piece at the start of the text gets a "▁".
func TestAddedTokens(t *testing.T) {
	sp := spFixture(t, "bpe_identity.model")
	cat := func(parts ...[]int) []int {
		var out []int
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	image, _ := sp.TokenID("<image>")
	tests := []struct {
		fixture, text string
		want          []int
	}{
		{"llama", "a <image> b", cat(sp.Encode("a "), []int{image}, sp.Encode(" b"))},
		{"llama", "<s>hello</s>", cat([]int{1}, sp.Encode("hello"), []int{2})},
		{"llama", "<image>", []int{image}},
		{"llama-metaspace", "a <image> b", cat(sp.Encode("a "), []int{image}, sp.Encode("b"))},
		{"llama-metaspace", "<unk><unk>", []int{0, 0}},
	}
	for _, tc := range tests {
		tok := openFixture(t, tc.fixture)
		if got := tok.Encode(tc.text); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Encode(%q) = %v, want %v", tc.fixture, tc.text, got, tc.want)
		}
	}
	q := openFixture(t, "qwen2")
	ids := q.Encode("<|im_start|>user\nhi<|im_end|>")
	start, _ := q.TokenID("<|im_start|>")
	end, _ := q.TokenID("<|im_end|>")
	if ids[0] != start || ids[len(ids)-1] != end {
		t.Errorf("qwen2 Encode = %v, want it to start with %d and end with %d", ids, start, end)
	}
	if s, err := q.Decode(ids); err != nil || s != "<|im_start|>user\nhi<|im_end|>" {
		t.Errorf("qwen2 Decode = %q, %v", s, err)
	}
}

func TestTokenIDRoles(t *testing.T) {
	for _, tok := range []Tokenizer{openFixture(t, "llama"), spFixture(t, "bpe_identity.model")} {
		for name, want := range map[string]int{"<s>": 1, "</s>": 2, BOS: 1, EOS: 2, "<unk>": 0} {
			if id, ok := tok.TokenID(name); !ok || id != want {
				t.Errorf("%T.TokenID(%q) = %d, %v, want %d", tok, name, id, ok, want)
			}
		}
		if id, ok := tok.TokenID(Pad); ok {
			t.Errorf("%T.TokenID(%q) = %d, want none (no pad token)", tok, Pad, id)
		}
	}
}

func TestOpenRecognisesFormats(t *testing.T) {
	for _, path := range []string{
		filepath.Join("testdata", "hf", "gpt2", "tokenizer.json"),
		filepath.Join("testdata", "hf", "llama", "tokenizer.json"),
		filepath.Join("testdata", "sp", "bpe_identity.model"),
	} {
		tok, err := Open(path)
		if err != nil {
			t.Fatalf("Open(%s): %v", path, err)
		}
		p, ok := tok.(Pretrained)
		if !ok {
			t.Fatalf("Open(%s) = %T, not Pretrained", path, tok)
		}
		raw, _ := os.ReadFile(path)
		if !bytes.Equal(p.Files()[0].Data, raw) {
			t.Errorf("Open(%s).Files()[0] differs from the file", path)
		}
	}
	llama, _ := Open(filepath.Join("testdata", "hf", "llama", "tokenizer.json"))
	if s := llama.(Pretrained).Specials(); len(s.ChatTemplates) != 2 {
		t.Errorf("Open(llama/tokenizer.json) did not read tokenizer_config.json: %+v", s)
	}
}

func TestWriteFilesRoundTrip(t *testing.T) {
	for _, name := range []string{"llama", "llama-metaspace", "qwen2"} {
		src := openFixture(t, name)
		dir := t.TempDir()
		if err := WriteFiles(dir, src); err != nil {
			t.Fatal(err)
		}
		for _, f := range src.Files() {
			got, err := os.ReadFile(filepath.Join(dir, f.Name))
			want, _ := os.ReadFile(filepath.Join("testdata", "hf", name, f.Name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: written %s differs from the original (%v)", name, f.Name, err)
			}
		}
		again, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		text := "A photo of 中文 and café 😀"
		if a, b := src.Encode(text), again.Encode(text); !reflect.DeepEqual(a, b) {
			t.Errorf("%s: re-opened tokenizer encodes differently: %v vs %v", name, a, b)
		}
	}
	spDir := t.TempDir()
	model, _ := os.ReadFile(filepath.Join("testdata", "sp", "bpe_identity.model"))
	if err := os.WriteFile(filepath.Join(spDir, "tokenizer.model"), model, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := OpenDir(spDir)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := WriteFiles(out, tok); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "tokenizer.model")); !bytes.Equal(got, model) {
		t.Errorf("WriteFiles changed tokenizer.model")
	}
	if err := WriteFiles(out, charTok{}); err == nil {
		t.Errorf("WriteFiles of a non-pretrained tokenizer succeeded")
	}
}

// mutate returns the gpt2 fixture's tokenizer.json with f applied to its
// decoded JSON.
func mutate(t *testing.T, name string, f func(m map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "hf", name, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseHFErrors(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		f       func(m map[string]any)
		cfg     string
		want    string
	}{
		{"unknown pre-tokenizer", "qwen2", func(m map[string]any) {
			m["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[1] = map[string]any{"type": "Foo"}
		}, "", `pre_tokenizer.pretokenizers[1].type "Foo": not supported`},
		{"unigram model", "gpt2", func(m map[string]any) { m["model"].(map[string]any)["type"] = "Unigram" }, "",
			`model.type "Unigram": not supported`},
		{"bad merge", "gpt2", func(m map[string]any) { m["model"].(map[string]any)["merges"].([]any)[3] = "nope x" }, "",
			`model.merges[3]: "nope" is not in model.vocab`},
		{"normalizer", "gpt2", func(m map[string]any) { m["normalizer"] = map[string]any{"type": "BertNormalizer"} }, "",
			`normalizer.type "BertNormalizer": not supported`},
		{"decoder", "llama", func(m map[string]any) {
			m["decoder"].(map[string]any)["decoders"].([]any)[1] = map[string]any{"type": "CTC"}
		}, "", `decoder.decoders[1].type "CTC": not supported`},
		{"regex", "qwen2", func(m map[string]any) {
			m["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)["pattern"] = map[string]any{"Regex": `a(?=b)`}
		}, "", `pre_tokenizer.pretokenizers[0].pattern.Regex "a(?=b)": not supported`},
		{"empty added", "gpt2", func(m map[string]any) { m["added_tokens"].([]any)[0].(map[string]any)["content"] = "" }, "",
			`added_tokens[0].content: empty`},
		{"template", "llama", func(m map[string]any) {
			m["post_processor"].(map[string]any)["single"].([]any)[0] = map[string]any{"SpecialToken": map[string]any{"id": "<nope>"}}
		}, "", `post_processor.single[0].SpecialToken.id "<nope>": not a token`},
		{"config token", "gpt2", nil, `{"bos_token": 5}`, `tokenizer_config.json: bos_token: want a string or an AddedToken object`},
		{"config unknown token", "gpt2", nil, `{"eos_token": "<eos>"}`, `tokenizer_config.json: eos_token: "<eos>" is not in the vocabulary`},
		{"config template", "gpt2", nil, `{"chat_template": [{"name": "x"}]}`, `tokenizer_config.json: chat_template[0]: want both`},
	}
	for _, tc := range tests {
		js := mutate(t, tc.fixture, func(m map[string]any) {
			if tc.f != nil {
				tc.f(m)
			}
		})
		var cfg []byte
		if tc.cfg != "" {
			cfg = []byte(tc.cfg)
		}
		_, err := ParseHF(js, cfg, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseHF error = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
	// OpenDir names the file.
	dir := t.TempDir()
	js := mutate(t, "gpt2", func(m map[string]any) { m["decoder"] = map[string]any{"type": "Foo"} })
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), js, 0o644)
	_, err := OpenDir(dir)
	if want := filepath.Join(dir, "tokenizer.json") + `: decoder.type "Foo": not supported`; err == nil || err.Error() != want {
		t.Errorf("OpenDir error = %v, want %q", err, want)
	}
}

func TestParseSentencePieceErrors(t *testing.T) {
	good := readModelFile(t, filepath.Join("testdata", "sp", "bpe_unk.model"))
	// a piece message with type 9: field 1 (pieces) = {1: "x", 3: 9}
	badType := append(append([]byte{}, good...), 0x0a, 0x05, 0x0a, 0x01, 'x', 0x18, 0x09)
	// trainer_spec.model_type = WORD
	word := append(append([]byte{}, good...), 0x12, 0x02, 0x18, 0x03)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", good[:len(good)/2], "ModelProto"},
		{"piece type", badType, "pieces[" + "400" + "].type: 9 is not a piece type"},
		{"model type", word, "trainer_spec.model_type: 3 (WORD or CHAR) is not supported"},
		{"empty", nil, "pieces: the model has no pieces"},
		{"group", []byte{0x0b}, "wire type 3 is not supported"},
		{"duplicate", append(append([]byte{}, good...), 0x0a, 0x05, 0x0a, 0x03, '<', 's', '>'), `"<s>" is already pieces[1]`},
	}
	for _, tc := range tests {
		_, err := ParseSentencePiece(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

// FuzzParseHF feeds malformed tokenizer.json files to the parser: it must
// return an error or a tokenizer whose Encode and Decode do not panic.
func FuzzParseHF(f *testing.F) {
	for _, name := range []string{"gpt2", "qwen2", "llama", "llama-metaspace"} {
		b, err := os.ReadFile(filepath.Join("testdata", "hf", name, "tokenizer.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}, "added_tokens": [{"id": 9, "content": "x", "lstrip": true, "rstrip": true, "single_word": true}]}`))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"<0x41>": 0, "<unk>": 1}, "merges": [], "byte_fallback": true, "unk_token": "<unk>", "fuse_unk": true}, "pre_tokenizer": {"type": "Metaspace", "split": true}, "decoder": {"type": "Metaspace"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseHF(data, nil, nil)
		if err != nil {
			return
		}
		for _, s := range []string{"", "Hello world", "  x\n\ty  ", "日本 😀 <s> <|endoftext|>", "\xff\xfe"} {
			ids := tok.Encode(s)
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("Encode(%q) = %v: id %d outside [0, %d)", s, ids, id, tok.VocabSize())
				}
			}
			if _, err := tok.Decode(ids); err != nil {
				t.Fatalf("Decode(Encode(%q)): %v", s, err)
			}
		}
	})
}

// FuzzParseSentencePiece does the same for .model files.
func FuzzParseSentencePiece(f *testing.F) {
	for _, name := range []string{"bpe_identity.model", "bpe_unk.model", "bpe_rules.model", "unigram_identity.model"} {
		f.Add(readModelFile(f, filepath.Join("testdata", "sp", name)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseSentencePiece(data)
		if err != nil {
			return
		}
		for _, s := range []string{"", "Hello world", "  x\n\ty  ", "日本 😀 <image>", "\xff\xfe"} {
			ids := tok.Encode(s)
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("Encode(%q) = %v: id %d outside [0, %d)", s, ids, id, tok.VocabSize())
				}
			}
			if _, err := tok.Decode(ids); err != nil {
				t.Fatalf("Decode(Encode(%q)): %v", s, err)
			}
		}
	})
}

// FuzzByteLevelRoundTrip: the GPT-2-style tokenizer (no normaliser) gives
// Decode(Encode(s)) == s for every valid UTF-8 s.
func FuzzByteLevelRoundTrip(f *testing.F) {
	tok := openFixture(f, "gpt2")
	for _, s := range []string{"", "Hello   world\n\n", "日本語 😀 'S 'll", "<|endoftext|>x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !isValidUTF8(s) {
			return
		}
		got, err := tok.Decode(tok.Encode(s))
		if err != nil || got != s {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", s, got, err)
		}
	})
}
