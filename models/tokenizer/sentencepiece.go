package tokenizer

import (
	"container/heap"
	"fmt"
	"strings"
	"unicode/utf8"
)

// SentencePiece is a tokenizer read from a SentencePiece model file
// (tokenizer.model, spiece.model: a serialized ModelProto). It encodes as
// sentencepiece's SentencePieceProcessor::Encode does, without BOS or EOS
// (see Specials().AddBOS), and decodes as its Decode does. It is immutable
// and safe for concurrent use.
type SentencePiece struct {
	m        *spModel
	norm     spNormalizer
	pieces   map[string]int // NORMAL, USER_DEFINED and UNUSED pieces
	reserved map[string]int // CONTROL, UNKNOWN and BYTE pieces
	lattice  *trie          // pieces, for Unigram
	byteID   [256]int       // id of <0xNN>, -1 if none
	minScore float32        // over NORMAL pieces, for Unigram's unk score
	maxScore float32
	specials Specials
	files    []File
}

// ParseSentencePiece reads a serialized SentencePiece ModelProto. Errors
// name the field at fault ("pieces[3].type: ...").
func ParseSentencePiece(data []byte) (*SentencePiece, error) {
	m, err := parseSPModel(data)
	if err != nil {
		return nil, err
	}
	cm, err := parseCharsmap(m.Charsmap)
	if err != nil {
		return nil, err
	}
	t := &SentencePiece{
		m:        m,
		pieces:   map[string]int{},
		reserved: map[string]int{},
		lattice:  newTrie(),
		minScore: float32Max,
		maxScore: float32MinPositive,
		files:    []File{{Name: "tokenizer.model", Data: data}},
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	var user *trie
	for i, p := range m.Pieces {
		switch p.Type {
		case PieceNormal, PieceUserDefined, PieceUnused:
			t.pieces[p.Piece] = i
			t.lattice.add(p.Piece, i)
		default:
			t.reserved[p.Piece] = i
		}
		switch p.Type {
		case PieceNormal:
			t.minScore = min(t.minScore, p.Score)
			t.maxScore = max(t.maxScore, p.Score)
		case PieceUserDefined:
			if user == nil {
				user = newTrie()
			}
			user.add(p.Piece, i)
		case PieceByte:
			b, _ := pieceByte(p.Piece)
			t.byteID[b] = i
		}
		if p.Type == PieceControl || p.Type == PieceUserDefined {
			t.specials.Tokens = append(t.specials.Tokens, SpecialToken{ID: i, Content: p.Piece, Special: p.Type == PieceControl})
		}
	}
	t.norm = spNormalizer{cmap: cm, user: user, addDummyPrefix: m.AddDummyPrefix, removeExtraWS: m.RemoveExtraWS, escapeWS: m.EscapeWhitespaces}
	t.specials.BOS, t.specials.EOS, t.specials.PAD, t.specials.UNK = m.BOSID, m.EOSID, m.PadID, m.UnkID
	t.specials.AddBOS = m.BOSID >= 0
	return t, nil
}

const (
	float32Max         = 3.40282346638528859811704183484516925440e+38
	float32MinPositive = 1.17549435082228750796873653722224568e-38 // C's FLT_MIN
	unkPenalty         = 10
)

// applyConfig applies a sibling tokenizer_config.json (special tokens,
// add_bos_token, chat template).
func (t *SentencePiece) applyConfig(cfg, jinja []byte) error {
	c, err := parseHFConfig(cfg, jinja)
	if err != nil {
		return err
	}
	return c.apply(&t.specials, func(s string) (int, bool) {
		id := t.pieceToID(s)
		return id, id != t.m.UnkID || s == t.m.Pieces[t.m.UnkID].Piece
	})
}

func (t *SentencePiece) addFile(name string, main, cfg, jinja []byte) {
	t.files = fileSet(name, main, cfg, jinja)
}

// VocabSize implements Tokenizer.
func (t *SentencePiece) VocabSize() int { return len(t.m.Pieces) }

// TokenID implements Tokenizer: the id of a piece spelled special
// ("<s>", "<image>"), else, for the Loom names "<bos>", "<eos>" and "<pad>",
// the model's BOS, EOS or PAD id.
func (t *SentencePiece) TokenID(special string) (int, bool) {
	if id, ok := t.reserved[special]; ok {
		return id, true
	}
	if id, ok := t.pieces[special]; ok {
		return id, true
	}
	return roleID(&t.specials, special)
}

// Specials implements Pretrained.
func (t *SentencePiece) Specials() Specials { return specialsCopy(t.specials) }

// Files implements Pretrained.
func (t *SentencePiece) Files() []File { return filesCopy(t.files) }

// Token implements Pretrained.
func (t *SentencePiece) Token(id int) (string, error) {
	if id < 0 || id >= len(t.m.Pieces) {
		return "", fmt.Errorf("token id %d is not in [0, %d)", id, len(t.m.Pieces))
	}
	return t.m.Pieces[id].Piece, nil
}

// Score returns the score of a piece (a log probability for Unigram, the
// negated merge rank for BPE).
func (t *SentencePiece) Score(id int) float32 { return t.m.Pieces[id].Score }

// Type returns the piece type of an id (PieceNormal, ...).
func (t *SentencePiece) Type(id int) int { return t.m.Pieces[id].Type }

// ModelType returns ModelUnigram or ModelBPE.
func (t *SentencePiece) ModelType() int { return t.m.ModelType }

// pieceToID is sentencepiece's PieceToId: reserved pieces first, then the
// others, else the unknown id.
func (t *SentencePiece) pieceToID(s string) int {
	if id, ok := t.reserved[s]; ok {
		return id
	}
	if id, ok := t.pieces[s]; ok {
		return id
	}
	return t.m.UnkID
}

// spToken is one piece of the model's output: its text in the normalised
// string and its id.
type spToken struct {
	piece string
	id    int
}

// Encode implements Tokenizer. It normalises text, segments it with the
// model (BPE or Unigram), splits unknown pieces into byte pieces when the
// model has byte_fallback, and otherwise merges runs of unknown pieces into
// one, as SentencePieceProcessor::Encode does.
func (t *SentencePiece) Encode(text string) []int {
	norm := t.norm.normalize(text)
	var toks []spToken
	if t.m.ModelType == ModelBPE {
		toks = t.encodeBPE(norm)
	} else {
		toks = t.encodeUnigram(norm)
	}
	out := make([]int, 0, len(toks))
	prevUnk := false
	for _, tk := range toks {
		unk := tk.id == t.m.UnkID
		switch {
		case unk && t.m.ByteFallback:
			for i := 0; i < len(tk.piece); i++ {
				id := t.byteID[tk.piece[i]]
				if id < 0 {
					id = t.m.UnkID
				}
				out = append(out, id)
			}
		case unk && prevUnk:
			// merged into the previous unknown piece
		default:
			out = append(out, tk.id)
		}
		prevUnk = unk
	}
	return out
}

// spSymbol is a BPE symbol: a span of the normalised text in a linked list.
type spSymbol struct {
	start, end int
	prev, next int
	freeze     bool // a user-defined symbol, never merged
}

type spPair struct {
	left, right int
	score       float32
	size        int
}

// spAgenda orders candidate merges: highest score first, then leftmost.
type spAgenda []spPair

func (a spAgenda) Len() int { return len(a) }
func (a spAgenda) Less(i, j int) bool {
	if a[i].score != a[j].score {
		return a[i].score > a[j].score
	}
	return a[i].left < a[j].left
}
func (a spAgenda) Swap(i, j int) { a[i], a[j] = a[j], a[i] }
func (a *spAgenda) Push(x any)   { *a = append(*a, x.(spPair)) }
func (a *spAgenda) Pop() any {
	old := *a
	x := old[len(old)-1]
	*a = old[:len(old)-1]
	return x
}

// encodeBPE is sentencepiece's bpe::Model::Encode: start from characters
// (user-defined symbols whole), repeatedly merge the adjacent pair whose
// concatenation is a piece of the highest score (leftmost on ties), then
// split UNUSED pieces back into the pieces they were merged from.
func (t *SentencePiece) encodeBPE(s string) []spToken {
	if s == "" {
		return nil
	}
	var syms []spSymbol
	for i := 0; i < len(s); {
		l, freeze := 0, false
		if t.norm.user != nil {
			if l = t.norm.user.longest(s[i:]); l > 0 {
				freeze = true
			}
		}
		if l == 0 {
			l = min(oneCharLen(s[i]), len(s)-i)
		}
		syms = append(syms, spSymbol{start: i, end: i + l, prev: len(syms) - 1, next: len(syms) + 1, freeze: freeze})
		i += l
	}
	syms[len(syms)-1].next = -1
	var agenda spAgenda
	revMerge := map[string][2]string{}
	add := func(l, r int) {
		if l < 0 || r < 0 || syms[l].freeze || syms[r].freeze {
			return
		}
		piece := s[syms[l].start:syms[r].end]
		id, ok := t.pieces[piece]
		if !ok {
			return
		}
		heap.Push(&agenda, spPair{left: l, right: r, score: t.m.Pieces[id].Score, size: len(piece)})
		if t.m.Pieces[id].Type == PieceUnused {
			revMerge[piece] = [2]string{s[syms[l].start:syms[l].end], s[syms[r].start:syms[r].end]}
		}
	}
	for i := 1; i < len(syms); i++ {
		add(i-1, i)
	}
	for agenda.Len() > 0 {
		top := heap.Pop(&agenda).(spPair)
		l, r := &syms[top.left], &syms[top.right]
		if l.start == l.end || r.start == r.end || (l.end-l.start)+(r.end-r.start) != top.size {
			continue // stale: one side was merged since
		}
		l.end = r.end
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = top.left
		}
		r.start, r.end = 0, 0
		add(l.prev, top.left)
		add(top.left, l.next)
	}
	var out []spToken
	var reseg func(w string)
	reseg = func(w string) {
		id := t.pieceToID(w)
		if id == t.m.UnkID || t.m.Pieces[id].Type != PieceUnused {
			out = append(out, spToken{w, id})
			return
		}
		p, ok := revMerge[w]
		if !ok {
			out = append(out, spToken{w, id})
			return
		}
		reseg(p[0])
		reseg(p[1])
	}
	for i := 0; i >= 0; i = syms[i].next {
		reseg(s[syms[i].start:syms[i].end])
	}
	return out
}

// oneCharLen is sentencepiece's string_util::OneCharLen: the length of a
// UTF-8 sequence from its lead byte alone.
func oneCharLen(b byte) int {
	return int("\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x02\x02\x03\x04"[b>>4])
}

// encodeUnigram is sentencepiece's unigram::Model::Encode: Viterbi over the
// lattice of all pieces that match the normalised text, scores summed in
// float32; a character no piece starts with is unknown with score
// min_score - 10; user-defined symbols score length*max_score - 0.1, where
// max_score starts at FLT_MIN, exactly as the C++ does.
func (t *SentencePiece) encodeUnigram(s string) []spToken {
	if s == "" {
		return nil
	}
	type node struct {
		id    int
		score float32
		start int
	}
	best := make([]node, len(s)+1)
	for i := range best {
		best[i] = node{id: -1, start: -1}
	}
	unkScore := t.minScore - unkPenalty
	for start := 0; start < len(s); {
		till := best[start].score
		mblen := min(oneCharLen(s[start]), len(s)-start)
		single := false
		t.lattice.walk(s[start:], func(l, id int) {
			p := t.m.Pieces[id]
			if p.Type == PieceUnused {
				return
			}
			end := start + l
			var cand float32
			var better bool
			if p.Type == PieceUserDefined {
				// float * size_t - 0.1 is a double, added to a float.
				c := float64(float32(l)*t.maxScore) - 0.1 + float64(till)
				better = best[end].start == -1 || c > float64(best[end].score)
				cand = float32(c)
			} else {
				cand = p.Score + till
				better = best[end].start == -1 || cand > best[end].score
			}
			if better {
				best[end] = node{id: id, score: cand, start: start}
			}
			if l == mblen {
				single = true
			}
		})
		if !single {
			end := start + mblen
			cand := unkScore + till
			if best[end].start == -1 || cand > best[end].score {
				best[end] = node{id: t.m.UnkID, score: cand, start: start}
			}
		}
		start += mblen
	}
	var out []spToken
	for end := len(s); end > 0; end = best[end].start {
		n := best[end]
		if n.start < 0 { // unreachable: every character has a node
			break
		}
		out = append(out, spToken{s[n.start:end], n.id})
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Decode implements Tokenizer as SentencePieceProcessor::Decode does:
// control pieces (BOS, EOS, PAD) are dropped, the unknown piece becomes
// " ⁇ " (trainer_spec.unk_surface), runs of byte pieces are decoded as
// UTF-8 with U+FFFD for each invalid byte, "▁" becomes a space, and the
// space the normaliser prepended (add_dummy_prefix) is removed from the
// first piece.
func (t *SentencePiece) Decode(ids []int) (string, error) {
	var b strings.Builder
	var bytesRun []byte
	flush := func() {
		for len(bytesRun) > 0 {
			r, l := utf8.DecodeRune(bytesRun)
			if r == utf8.RuneError && l <= 1 {
				b.WriteString("\uFFFD")
				l = 1
			} else {
				b.Write(bytesRun[:l])
			}
			bytesRun = bytesRun[l:]
		}
	}
	bosWS, bosWSSeen := true, false
	for i, id := range ids {
		if id < 0 || id >= len(t.m.Pieces) {
			return "", fmt.Errorf("ids[%d] = %d: not a token id (vocabulary has %d)", i, id, len(t.m.Pieces))
		}
		p := t.m.Pieces[id]
		if p.Type == PieceByte {
			v, _ := pieceByte(p.Piece)
			bytesRun = append(bytesRun, v)
			continue
		}
		flush()
		if bosWSSeen || b.Len() > 0 {
			bosWS = false
		}
		bosWSSeen = false
		switch p.Type {
		case PieceControl:
			continue
		case PieceUnknown:
			b.WriteString(t.m.UnkSurface)
			continue
		}
		piece := p.Piece
		if bosWS && (t.m.AddDummyPrefix || t.m.RemoveExtraWS) {
			if strings.HasPrefix(piece, spaceSymbol) {
				piece = piece[len(spaceSymbol):]
				bosWSSeen = !t.m.RemoveExtraWS
			}
		}
		b.WriteString(strings.ReplaceAll(piece, spaceSymbol, " "))
	}
	flush()
	return b.String(), nil
}

var _ Pretrained = (*SentencePiece)(nil)
