package tokenizer

import (
	"fmt"
	"strings"
	"sync"
)

// Tokenizer maps text to token ids and back. Implementations must be safe
// for concurrent use by several goroutines.
//
// Encode never fails: every string has an encoding. Occurrences of a
// special token's text (for example "<image>") become that token's single
// id. Encode adds no BOS or EOS; a Pretrained tokenizer says in Specials
// whether its original pipeline does. Decode returns an error naming the
// position of an id that is not a token id (outside [0, VocabSize()), or a
// gap in a tokenizer.json's ids).
//
// Round trip. Whether Decode(Encode(s)) == s depends on the implementation:
//   - *BPE (Loom's own) and *HF files without a normalizer and with
//     byte-level pre-tokenization and decoder (GPT-2, OPT): for every valid
//     UTF-8 s; *BPE also for invalid UTF-8 (HF decodes invalid bytes to
//     U+FFFD).
//   - *HF with an NFC normalizer (Qwen2): Decode(Encode(s)) == NFC(s).
//   - *HF SentencePiece-style (LLaMA: byte fallback, "▁" for spaces): for
//     valid UTF-8 s without the character "▁" (U+2581, which decodes to a
//     space), except that with a Metaspace pre-tokenizer of
//     prepend_scheme "first" a leading space is absorbed into the "▁" it
//     would have got anyway and is lost, and with the legacy Prepend
//     normalizer every piece after an added token gets an extra leading
//     space (tokenizers normalises each piece on its own). Without byte
//     fallback, characters become <unk>, which decodes to "<unk>".
//   - *SentencePiece: the model's normal form of s, not s, whenever the
//     normalizer changes s: nmt_nfkc applies NFKC and maps tabs and
//     newlines to spaces; remove_extra_whitespaces (the default) drops
//     leading and trailing spaces and collapses runs of spaces; characters
//     outside the vocabulary become " ⁇ " unless the model has
//     byte_fallback; "▁" in s decodes to a space. With an identity
//     normalizer, byte fallback and remove_extra_whitespaces false
//     (LLaMA's settings) it is s for valid UTF-8 s without "▁".
//
// Special tokens: *BPE and *HF map a special token's text to its id and
// decode the id back to the text. *SentencePiece matches only user-defined
// symbols whole; "<s>" in text is ordinary characters, and Decode drops
// control ids (BOS, EOS, PAD).
type Tokenizer interface {
	Encode(text string) []int
	Decode(ids []int) (string, error)
	// VocabSize is the number of ids, special tokens included; every id
	// Encode returns is below it.
	VocabSize() int
	// TokenID returns the id of a special token such as "<image>".
	TokenID(special string) (int, bool)
}

// Special token names used by the model families in models/. DefaultSpecial
// lists them in the order Train appends them to the vocabulary.
const (
	Pad       = "<pad>"
	BOS       = "<bos>"
	EOS       = "<eos>"
	Image     = "<image>"   // LLaVA/VILA placeholder replaced by image features
	ImgStart  = "<img>"     // Qwen-VL image start
	ImgEnd    = "</img>"    // Qwen-VL image end
	VisionBeg = "<vision>"  // LWM vision span start
	VisionEnd = "</vision>" // LWM vision span end
	EOF       = "<eof>"     // LWM end of frame (a vision id in the LWM model)
	EOV       = "<eov>"     // LWM end of vision (a vision id in the LWM model)
	Dec       = "[DEC]"     // BLIP-2 Q-Former decoder start token
)

// DefaultSpecial is the special-token set Train uses when
// TrainConfig.Special is nil.
var DefaultSpecial = []string{Pad, BOS, EOS, Image, ImgStart, ImgEnd, VisionBeg, VisionEnd, EOF, EOV, Dec}

// BPE is a byte-level byte-pair-encoding tokenizer. Ids 0..255 are the
// bytes, id 256+i is merges[i], and the special tokens follow the merges.
// A BPE is immutable after construction and safe for concurrent use.
type BPE struct {
	merges  [][2]int
	special []string
	ranks   map[[2]int]int // pair -> merge index
	tokens  [][]byte       // bytes of every non-special id
	specID  map[string]int

	mu    sync.Mutex
	cache map[string][]int // pre-token -> ids
}

// maxCache bounds the per-pre-token memo of Encode.
const maxCache = 1 << 16

// NewBPE builds a tokenizer from merges and special tokens. It fails, naming
// the entry, when a merge uses an id that is not earlier than itself, when a
// pair is merged twice, or when a special token is empty or repeated.
func NewBPE(merges [][2]int, special []string) (*BPE, error) {
	t := &BPE{
		merges:  append([][2]int(nil), merges...),
		special: append([]string(nil), special...),
		ranks:   make(map[[2]int]int, len(merges)),
		tokens:  make([][]byte, 256+len(merges)),
		specID:  make(map[string]int, len(special)),
		cache:   map[string][]int{},
	}
	for b := 0; b < 256; b++ {
		t.tokens[b] = []byte{byte(b)}
	}
	for i, m := range merges {
		id := 256 + i
		for _, x := range m {
			if x < 0 || x >= id {
				return nil, fmt.Errorf("merges[%d] = %v: id %d is not in [0, %d) (a merge may only use earlier ids)", i, m, x, id)
			}
		}
		if j, dup := t.ranks[m]; dup {
			return nil, fmt.Errorf("merges[%d] = %v: pair already merged at merges[%d]", i, m, j)
		}
		t.ranks[m] = i
		tok := make([]byte, 0, len(t.tokens[m[0]])+len(t.tokens[m[1]]))
		tok = append(append(tok, t.tokens[m[0]]...), t.tokens[m[1]]...)
		t.tokens[id] = tok
	}
	for i, s := range special {
		if s == "" {
			return nil, fmt.Errorf("special_tokens[%d]: empty token", i)
		}
		if _, dup := t.specID[s]; dup {
			return nil, fmt.Errorf("special_tokens[%d]: %q appears twice", i, s)
		}
		t.specID[s] = 256 + len(merges) + i
	}
	return t, nil
}

// VocabSize implements Tokenizer.
func (t *BPE) VocabSize() int { return 256 + len(t.merges) + len(t.special) }

// TokenID implements Tokenizer.
func (t *BPE) TokenID(special string) (int, bool) {
	id, ok := t.specID[special]
	return id, ok
}

// Merges returns a copy of the merge list (merge i creates id 256+i).
func (t *BPE) Merges() [][2]int { return append([][2]int(nil), t.merges...) }

// Special returns a copy of the special tokens in id order.
func (t *BPE) Special() []string { return append([]string(nil), t.special...) }

// Token returns the text of one id (the bytes of a regular token, the name
// of a special token).
func (t *BPE) Token(id int) (string, error) {
	if id < 0 || id >= t.VocabSize() {
		return "", fmt.Errorf("token id %d is not in [0, %d)", id, t.VocabSize())
	}
	if id < len(t.tokens) {
		return string(t.tokens[id]), nil
	}
	return t.special[id-len(t.tokens)], nil
}

// Encode implements Tokenizer.
func (t *BPE) Encode(text string) []int {
	var out []int
	for len(text) > 0 {
		at, sp := findSpecial(text, t.special)
		for _, w := range pretokenize([]byte(text[:at])) {
			out = append(out, t.encodeWord(w)...)
		}
		if sp == "" {
			break
		}
		out = append(out, t.specID[sp])
		text = text[at+len(sp):]
	}
	return out
}

// EncodeOrdinary encodes text without recognising special tokens: "<image>"
// becomes the ids of its seven bytes' merges.
func (t *BPE) EncodeOrdinary(text string) []int {
	var out []int
	for _, w := range pretokenize([]byte(text)) {
		out = append(out, t.encodeWord(w)...)
	}
	return out
}

// findSpecial returns the first position of a special token in text and the
// longest special token starting there, or (len(text), "") if none occurs.
func findSpecial(text string, special []string) (int, string) {
	if len(special) == 0 {
		return len(text), ""
	}
	for i := 0; i < len(text); i++ {
		best := ""
		for _, s := range special {
			if len(s) > len(best) && strings.HasPrefix(text[i:], s) {
				best = s
			}
		}
		if best != "" {
			return i, best
		}
	}
	return len(text), ""
}

func (t *BPE) encodeWord(w []byte) []int {
	key := string(w)
	t.mu.Lock()
	ids, ok := t.cache[key]
	t.mu.Unlock()
	if ok {
		return ids
	}
	ids = make([]int, len(w))
	for i, b := range w {
		ids[i] = int(b)
	}
	ids = applyMerges(ids, t.ranks)
	t.mu.Lock()
	if len(t.cache) >= maxCache {
		clear(t.cache)
	}
	t.cache[key] = ids
	t.mu.Unlock()
	return ids
}

// applyMerges repeatedly merges the adjacent pair of lowest rank, all of its
// non-overlapping occurrences left to right, until no pair has a rank. This
// replays training order, so a word is encoded as training merged it.
func applyMerges(ids []int, ranks map[[2]int]int) []int {
	for len(ids) > 1 {
		best, bestRank := [2]int{}, -1
		for i := 0; i+1 < len(ids); i++ {
			p := [2]int{ids[i], ids[i+1]}
			if r, ok := ranks[p]; ok && (bestRank < 0 || r < bestRank) {
				best, bestRank = p, r
			}
		}
		if bestRank < 0 {
			break
		}
		ids = mergePair(ids, best, 256+bestRank)
	}
	return ids
}

// mergePair replaces the non-overlapping occurrences of p in ids, left to
// right, by id. It writes into ids and returns the shortened slice.
func mergePair(ids []int, p [2]int, id int) []int {
	out := ids[:0]
	for i := 0; i < len(ids); i++ {
		if i+1 < len(ids) && ids[i] == p[0] && ids[i+1] == p[1] {
			out = append(out, id)
			i++
			continue
		}
		out = append(out, ids[i])
	}
	return out
}

// Decode implements Tokenizer.
func (t *BPE) Decode(ids []int) (string, error) {
	var b strings.Builder
	for i, id := range ids {
		switch {
		case id >= 0 && id < len(t.tokens):
			b.Write(t.tokens[id])
		case id >= len(t.tokens) && id < t.VocabSize():
			b.WriteString(t.special[id-len(t.tokens)])
		default:
			return "", fmt.Errorf("ids[%d] = %d: not a token id (vocabulary has %d)", i, id, t.VocabSize())
		}
	}
	return b.String(), nil
}

var _ Tokenizer = (*BPE)(nil)
