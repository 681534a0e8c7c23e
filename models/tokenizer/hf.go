package tokenizer

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// HF is a tokenizer read from a Hugging Face tokenizer.json with a BPE
// model: byte-level BPE (GPT-2, OPT, Qwen2, Llama-3) or SentencePiece-style
// BPE with byte fallback (LLaMA, Mistral). Encode runs the pipeline of the
// tokenizers library without the post-processor (no BOS/EOS; see
// Specials().AddBOS): added tokens are split off first, then each piece in
// between is normalised, pre-tokenized and encoded by the model. Decode runs
// the decoder on all ids, special tokens included (skip_special_tokens =
// false). An HF is immutable and safe for concurrent use.
type HF struct {
	added      []hfAdded
	rawAdded   *trie // non-normalized added tokens -> index in added
	normAdded  *trie // normalized ones, matched after the normalizer
	normalizer normFunc
	pretok     preFunc
	decoder    decFunc
	bpe        hfBPE
	tokens     []string // id -> token text ("" for an unused id)
	isToken    []bool
	specials   Specials
	files      []File
}

type hfAdded struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// hfBPE is tokenizers' BPE model.
type hfBPE struct {
	vocab        map[string]int
	merges       map[[2]int][2]int // pair -> (rank, new id)
	unk          int               // -1 if no unk_token
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	byteIDs      [256]int // <0xNN> ids, -1 if absent
}

// ParseHF reads a tokenizer.json (js) and, when not nil, the
// tokenizer_config.json (cfg) and chat_template.jinja (jinja) beside it.
// Errors name the JSON path of the field at fault
// (`pre_tokenizer.pretokenizers[1].type "Foo": not supported`); errors in
// cfg start with "tokenizer_config.json: ".
func ParseHF(js, cfg, jinja []byte) (*HF, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	t := &HF{files: fileSet("tokenizer.json", js, cfg, jinja)}
	if err := t.parseModel(top["model"]); err != nil {
		return nil, err
	}
	var err error
	if t.normalizer, err = parseNormalizer(top["normalizer"], "normalizer"); err != nil {
		return nil, err
	}
	if t.pretok, err = parsePreTokenizer(top["pre_tokenizer"], "pre_tokenizer"); err != nil {
		return nil, err
	}
	if t.decoder, err = parseDecoder(top["decoder"], "decoder"); err != nil {
		return nil, err
	}
	if err := t.parseAdded(top["added_tokens"]); err != nil {
		return nil, err
	}
	t.specials.BOS, t.specials.EOS, t.specials.PAD, t.specials.UNK = -1, -1, -1, t.bpe.unk
	if err := t.parsePostProcessor(top["post_processor"], "post_processor"); err != nil {
		return nil, err
	}
	if err := t.parsePadding(top["padding"]); err != nil {
		return nil, err
	}
	if cfg != nil || jinja != nil {
		c, err := parseHFConfig(cfg, jinja)
		if err != nil {
			return nil, err
		}
		if err := c.apply(&t.specials, t.lookup); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *HF) parseModel(v json.RawMessage) error {
	o, typ, err := parseObj(v, "model")
	if err != nil {
		return err
	}
	if o == nil {
		return fmt.Errorf("model: missing")
	}
	if typ != "BPE" {
		return fmt.Errorf("model.type %q: not supported (Loom reads BPE models)", typ)
	}
	for _, k := range []string{"continuing_subword_prefix", "end_of_word_suffix"} {
		var s string
		if err := o.get(k, "model", &s); err != nil {
			return err
		}
		if s != "" {
			return fmt.Errorf("model.%s %q: not supported", k, s)
		}
	}
	var dropout float64
	if err := o.get("dropout", "model", &dropout); err != nil {
		return err
	}
	if dropout != 0 {
		return fmt.Errorf("model.dropout %v: not supported (Encode is deterministic)", dropout)
	}
	b := &t.bpe
	if err := o.get("fuse_unk", "model", &b.fuseUnk); err != nil {
		return err
	}
	if err := o.get("byte_fallback", "model", &b.byteFallback); err != nil {
		return err
	}
	if err := o.get("ignore_merges", "model", &b.ignoreMerges); err != nil {
		return err
	}
	if err := json.Unmarshal(o["vocab"], &b.vocab); err != nil {
		return fmt.Errorf("model.vocab: want an object of token: id, got %s", short(o["vocab"]))
	}
	for tok, id := range b.vocab {
		if id < 0 || id >= len(b.vocab)+maxIDGap {
			return fmt.Errorf("model.vocab[%q]: id %d is not in [0, %d) (vocab has %d entries)", tok, id, len(b.vocab)+maxIDGap, len(b.vocab))
		}
		t.setToken(id, tok)
	}
	if len(b.vocab) != countTrue(t.isToken) {
		return fmt.Errorf("model.vocab: %d entries but %d distinct ids (an id is used twice)", len(b.vocab), countTrue(t.isToken))
	}
	b.unk = -1
	var unk string
	if err := o.get("unk_token", "model", &unk); err != nil {
		return err
	}
	if unk != "" {
		id, ok := b.vocab[unk]
		if !ok {
			return fmt.Errorf("model.unk_token %q: not in model.vocab", unk)
		}
		b.unk = id
	}
	for i := range b.byteIDs {
		b.byteIDs[i] = -1
		if id, ok := b.vocab[bytePiece(byte(i))]; ok {
			b.byteIDs[i] = id
		}
	}
	return t.parseMerges(o["merges"])
}

// maxIDGap bounds how far ids may run past the number of entries (ids of a
// real tokenizer.json are dense), so that a corrupt id cannot make Loom
// allocate gigabytes.
const maxIDGap = 1 << 16

func countTrue(b []bool) int {
	n := 0
	for _, x := range b {
		if x {
			n++
		}
	}
	return n
}

// parseMerges reads both forms: pairs ["a", "b"] (tokenizers >= 0.20) and
// strings "a b".
func (t *HF) parseMerges(v json.RawMessage) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		return fmt.Errorf("model.merges: want a list, got %s", short(v))
	}
	b := &t.bpe
	b.merges = make(map[[2]int][2]int, len(raw))
	for i, m := range raw {
		var pair []string
		if err := json.Unmarshal(m, &pair); err != nil {
			var s string
			if err := json.Unmarshal(m, &s); err != nil {
				return fmt.Errorf("model.merges[%d]: want \"a b\" or [\"a\", \"b\"], got %s", i, short(m))
			}
			pair = strings.Split(s, " ")
		}
		if len(pair) != 2 {
			return fmt.Errorf("model.merges[%d]: %s is not a pair of tokens", i, short(m))
		}
		a, okA := b.vocab[pair[0]]
		c, okC := b.vocab[pair[1]]
		n, okN := b.vocab[pair[0]+pair[1]]
		switch {
		case !okA:
			return fmt.Errorf("model.merges[%d]: %q is not in model.vocab", i, pair[0])
		case !okC:
			return fmt.Errorf("model.merges[%d]: %q is not in model.vocab", i, pair[1])
		case !okN:
			return fmt.Errorf("model.merges[%d]: the merged token %q is not in model.vocab", i, pair[0]+pair[1])
		}
		if _, dup := b.merges[[2]int{a, c}]; !dup { // tokenizers keeps the first rank
			b.merges[[2]int{a, c}] = [2]int{i, n}
		}
	}
	return nil
}

func (t *HF) setToken(id int, tok string) {
	for len(t.tokens) <= id {
		t.tokens = append(t.tokens, "")
		t.isToken = append(t.isToken, false)
	}
	t.tokens[id], t.isToken[id] = tok, true
}

func (t *HF) parseAdded(v json.RawMessage) error {
	if len(v) == 0 || string(v) == "null" {
		return nil
	}
	if err := json.Unmarshal(v, &t.added); err != nil {
		return fmt.Errorf("added_tokens: %v", err)
	}
	for i, a := range t.added {
		if a.Content == "" {
			return fmt.Errorf("added_tokens[%d].content: empty", i)
		}
		if limit := len(t.bpe.vocab) + len(t.added) + maxIDGap; a.ID < 0 || a.ID >= limit {
			return fmt.Errorf("added_tokens[%d].id: %d is not in [0, %d)", i, a.ID, limit)
		}
		if a.ID < len(t.tokens) && t.isToken[a.ID] && t.tokens[a.ID] != a.Content {
			return fmt.Errorf("added_tokens[%d]: id %d is %q in model.vocab, not %q", i, a.ID, t.tokens[a.ID], a.Content)
		}
		t.setToken(a.ID, a.Content)
		tr := &t.rawAdded
		if a.Normalized && t.normalizer != nil {
			tr = &t.normAdded
		}
		if *tr == nil {
			*tr = newTrie()
		}
		(*tr).add(a.Content, i)
		t.specials.Tokens = append(t.specials.Tokens, SpecialToken{ID: a.ID, Content: a.Content, Special: a.Special})
	}
	sortTokens(t.specials.Tokens)
	return nil
}

// parsePostProcessor reads which special tokens the original pipeline adds
// around a single sequence: TemplateProcessing's "single" template (LLaMA:
// <s> $A), Bert/RobertaProcessing's cls and sep. ByteLevel (offsets only)
// adds nothing.
func (t *HF) parsePostProcessor(v json.RawMessage, path string) error {
	o, typ, err := parseObj(v, path)
	if o == nil || err != nil {
		return err
	}
	switch typ {
	case "Sequence":
		l, err := o.list("processors", path)
		if err != nil {
			return err
		}
		for i, e := range l {
			if err := t.parsePostProcessor(e, fmt.Sprintf("%s.processors[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case "ByteLevel":
		return nil
	case "TemplateProcessing":
		var single []map[string]struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(o["single"], &single); err != nil {
			return fmt.Errorf("%s.single: want a list of {SpecialToken|Sequence: {id, type_id}}, got %s", path, short(o["single"]))
		}
		var specials map[string]struct {
			IDs []int `json:"ids"`
		}
		if err := o.get("special_tokens", path, &specials); err != nil {
			return err
		}
		seq := -1
		for i, item := range single {
			if _, ok := item["Sequence"]; ok {
				seq = i
				continue
			}
			st, ok := item["SpecialToken"]
			if !ok {
				return fmt.Errorf("%s.single[%d]: want SpecialToken or Sequence", path, i)
			}
			id, ok := t.lookup(st.ID)
			if s, in := specials[st.ID]; in && len(s.IDs) == 1 {
				id, ok = s.IDs[0], true
			}
			if !ok {
				return fmt.Errorf("%s.single[%d].SpecialToken.id %q: not a token", path, i, st.ID)
			}
			if seq < 0 && i == 0 {
				t.specials.AddBOS, t.specials.BOS = true, id
			} else if seq >= 0 && i == len(single)-1 {
				t.specials.AddEOS, t.specials.EOS = true, id
			}
		}
		if seq < 0 {
			return fmt.Errorf("%s.single: no Sequence item", path)
		}
		return nil
	case "BertProcessing", "RobertaProcessing":
		for _, k := range []string{"cls", "sep"} {
			var p []json.RawMessage
			var id int
			if err := json.Unmarshal(o[k], &p); err != nil || len(p) != 2 || json.Unmarshal(p[1], &id) != nil {
				return fmt.Errorf("%s.%s: want [token, id], got %s", path, k, short(o[k]))
			}
			if k == "cls" {
				t.specials.AddBOS, t.specials.BOS = true, id
			} else {
				t.specials.AddEOS, t.specials.EOS = true, id
			}
		}
		return nil
	}
	return unsupported(path, typ)
}

func (t *HF) parsePadding(v json.RawMessage) error {
	if len(v) == 0 || string(v) == "null" {
		return nil
	}
	var p struct {
		PadID *int `json:"pad_id"`
	}
	if err := json.Unmarshal(v, &p); err != nil {
		return fmt.Errorf("padding: %v", err)
	}
	if p.PadID != nil {
		t.specials.PAD = *p.PadID
	}
	return nil
}

// lookup returns the id of an added token or vocabulary entry.
func (t *HF) lookup(s string) (int, bool) {
	for _, a := range t.added {
		if a.Content == s {
			return a.ID, true
		}
	}
	id, ok := t.bpe.vocab[s]
	return id, ok
}

// VocabSize implements Tokenizer: one more than the largest id of the
// vocabulary and the added tokens.
func (t *HF) VocabSize() int { return len(t.tokens) }

// TokenID implements Tokenizer: the id of an added token or vocabulary
// entry spelled special, else, for the Loom names "<bos>", "<eos>" and
// "<pad>", the tokenizer's BOS, EOS or PAD id.
func (t *HF) TokenID(special string) (int, bool) {
	if id, ok := t.lookup(special); ok {
		return id, true
	}
	return roleID(&t.specials, special)
}

// Specials implements Pretrained.
func (t *HF) Specials() Specials { return specialsCopy(t.specials) }

// Files implements Pretrained.
func (t *HF) Files() []File { return filesCopy(t.files) }

func (t *HF) addFile(name string, main, cfg, jinja []byte) {
	t.files = fileSet(name, main, cfg, jinja)
}

// Token implements Pretrained.
func (t *HF) Token(id int) (string, error) {
	if id < 0 || id >= len(t.tokens) || !t.isToken[id] {
		return "", fmt.Errorf("token id %d is not in the vocabulary", id)
	}
	return t.tokens[id], nil
}

// Encode implements Tokenizer.
func (t *HF) Encode(text string) []int {
	var out []int
	t.splitAdded(text, t.rawAdded, 0, func(seg string, at int) {
		if t.normalizer != nil {
			seg = t.normalizer(seg)
		}
		t.splitAdded(seg, t.normAdded, at, func(seg string, at int) {
			pre := []preTok{{text: seg, atStart: at == 0}}
			if t.pretok != nil {
				pre = t.pretok(pre)
			}
			for _, p := range pre {
				out = t.bpe.encodeWord(p.text, out)
			}
		}, &out)
	}, &out)
	return out
}

// splitAdded cuts s at the added tokens of tr (leftmost, then longest,
// honouring single_word, lstrip and rstrip as tokenizers'
// AddedVocabulary does), appends their ids to out and calls seg for each
// non-empty piece in between with its offset (0 only for a piece at the
// start of the input; base is s's own offset).
func (t *HF) splitAdded(s string, tr *trie, base int, seg func(string, int), out *[]int) {
	if tr == nil {
		if s != "" {
			seg(s, base)
		}
		return
	}
	prev := 0 // start of the text not yet emitted
	for i := 0; i < len(s); {
		l, idx := tr.longestValue(s[i:])
		if l == 0 {
			_, n := utf8.DecodeRuneInString(s[i:])
			i += n
			continue
		}
		a := t.added[idx]
		start, stop := i, i+l
		if a.SingleWord && ((start > 0 && endsWithWord(s[:start])) || (stop < len(s) && startsWithWord(s[stop:]))) {
			_, n := utf8.DecodeRuneInString(s[i:])
			i += n
			continue
		}
		if a.LStrip {
			start = prev + len(strings.TrimRightFunc(s[prev:start], unicode.IsSpace))
		}
		if a.RStrip {
			stop += len(s[stop:]) - len(strings.TrimLeftFunc(s[stop:], unicode.IsSpace))
		}
		if start > prev {
			seg(s[prev:start], base+prev)
		}
		*out = append(*out, a.ID)
		prev, i = stop, stop
	}
	if prev < len(s) {
		seg(s[prev:], base+prev)
	}
}

func isWordChar(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }
func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return isWordChar(r)
}
func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return isWordChar(r)
}

// hfSymbol is one symbol of a word being merged.
type hfSymbol struct {
	id         int
	prev, next int
	gone       bool
}

type hfMerge struct{ pos, rank, newID int }
type hfQueue []hfMerge

func (q hfQueue) Len() int { return len(q) }
func (q hfQueue) Less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank < q[j].rank
	}
	return q[i].pos < q[j].pos
}
func (q hfQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *hfQueue) Push(x any)   { *q = append(*q, x.(hfMerge)) }
func (q *hfQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// encodeWord is tokenizers' BPE::tokenize for one pre-token: characters
// (or <0xNN> pieces with byte_fallback, or unk, fused if fuse_unk), then
// merges by rank, lowest first, leftmost on ties.
func (b *hfBPE) encodeWord(w string, out []int) []int {
	if w == "" {
		return out
	}
	if b.ignoreMerges {
		if id, ok := b.vocab[w]; ok {
			return append(out, id)
		}
	}
	var syms []hfSymbol
	add := func(id int) { syms = append(syms, hfSymbol{id: id, prev: len(syms) - 1, next: len(syms) + 1}) }
	pendingUnk := false
	for i := 0; i < len(w); {
		_, l := utf8.DecodeRuneInString(w[i:])
		c := w[i : i+l]
		i += l
		if id, ok := b.vocab[c]; ok {
			if pendingUnk {
				add(b.unk)
				pendingUnk = false
			}
			add(id)
			continue
		}
		if b.byteFallback && b.hasBytes(c) {
			if pendingUnk {
				add(b.unk)
				pendingUnk = false
			}
			for k := 0; k < len(c); k++ {
				add(b.byteIDs[c[k]])
			}
			continue
		}
		if b.unk < 0 {
			continue // tokenizers drops a character it cannot encode
		}
		if pendingUnk && !b.fuseUnk {
			add(b.unk)
		}
		pendingUnk = true
	}
	if pendingUnk {
		add(b.unk)
	}
	if len(syms) == 0 {
		return out
	}
	syms[len(syms)-1].next = -1
	var q hfQueue
	for i := 0; i+1 < len(syms); i++ {
		if m, ok := b.merges[[2]int{syms[i].id, syms[i+1].id}]; ok {
			q = append(q, hfMerge{pos: i, rank: m[0], newID: m[1]})
		}
	}
	heap.Init(&q)
	for q.Len() > 0 {
		top := heap.Pop(&q).(hfMerge)
		s := &syms[top.pos]
		if s.gone || s.next < 0 {
			continue
		}
		r := &syms[s.next]
		if m, ok := b.merges[[2]int{s.id, r.id}]; !ok || m[1] != top.newID {
			continue // stale
		}
		s.id = top.newID
		r.gone = true
		s.next = r.next
		if s.next >= 0 {
			syms[s.next].prev = top.pos
		}
		if s.prev >= 0 {
			if m, ok := b.merges[[2]int{syms[s.prev].id, s.id}]; ok {
				heap.Push(&q, hfMerge{pos: s.prev, rank: m[0], newID: m[1]})
			}
		}
		if s.next >= 0 {
			if m, ok := b.merges[[2]int{s.id, syms[s.next].id}]; ok {
				heap.Push(&q, hfMerge{pos: top.pos, rank: m[0], newID: m[1]})
			}
		}
	}
	for i := 0; i >= 0; i = syms[i].next {
		out = append(out, syms[i].id)
	}
	return out
}

func (b *hfBPE) hasBytes(c string) bool {
	for k := 0; k < len(c); k++ {
		if b.byteIDs[c[k]] < 0 {
			return false
		}
	}
	return true
}

// Decode implements Tokenizer: the tokens of ids, special ones included,
// through the decoder (joined without separator when there is none).
func (t *HF) Decode(ids []int) (string, error) {
	toks := make([]string, len(ids))
	for i, id := range ids {
		if id < 0 || id >= len(t.tokens) || !t.isToken[id] {
			return "", fmt.Errorf("ids[%d] = %d: not a token id (vocabulary has %d)", i, id, len(t.tokens))
		}
		toks[i] = t.tokens[id]
	}
	if t.decoder == nil {
		return strings.Join(toks, " "), nil
	}
	return strings.Join(t.decoder(toks), ""), nil
}

// AddedTokens lists the added tokens in id order.
func (t *HF) AddedTokens() []SpecialToken { return t.Specials().Tokens }

// lossyUTF8 is Rust's String::from_utf8_lossy: each maximal invalid
// subsequence becomes one U+FFFD.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, l := utf8.DecodeRune(b)
		if r != utf8.RuneError || l > 1 {
			sb.Write(b[:l])
			b = b[l:]
			continue
		}
		sb.WriteString("\uFFFD")
		b = b[maximalSubpart(b):]
	}
	return sb.String()
}

// maximalSubpart is the length of the invalid UTF-8 prefix of b that one
// U+FFFD replaces (Unicode §3.9, "maximal subpart").
func maximalSubpart(b []byte) int {
	c := b[0]
	need, lo, hi := 0, byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		x := b[n]
		if (k == 0 && (x < lo || x > hi)) || (k > 0 && (x < 0x80 || x > 0xBF)) {
			break
		}
		n++
	}
	return n
}

func isValidUTF8(s string) bool { return utf8.ValidString(s) }

// isHFTokenizerJSON reports whether b looks like a tokenizer.json: a JSON
// object with a "model" and no "format" field.
func isHFTokenizerJSON(b []byte) bool {
	var head map[string]json.RawMessage
	if json.Unmarshal(b, &head) != nil {
		return false
	}
	_, hasFormat := head["format"]
	_, hasModel := head["model"]
	return hasModel && !hasFormat
}

var _ Pretrained = (*HF)(nil)
