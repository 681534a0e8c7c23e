package tokenizer

import (
	"fmt"
	"sort"
	"strings"
)

// Extended is a pretrained tokenizer with special tokens appended after
// its vocabulary: what LLaVA does to Vicuna's tokenizer for <image>, and
// what Loom's families need for their own special tokens (DefaultSpecial)
// when a Hugging Face tokenizer lacks them. The added tokens get ids
// base.VocabSize(), base.VocabSize()+1, ... in the order given; the LLM's
// embedding rows for them start at random (the model's vocabulary is
// padded, see models/hf Entry.PadRows). Text of an added token is matched
// before the base tokenizer runs, longest first, so "<image>" is one id.
type Extended struct {
	base  Pretrained
	added []string
	ids   map[string]int
	order []string // added, longest first
}

// WithSpecial returns base with each of names that base has no id for
// (TokenID) appended as a special token. With nothing to add it returns
// base itself.
func WithSpecial(base Pretrained, names []string) Pretrained {
	e := &Extended{base: base, ids: map[string]int{}}
	for _, n := range names {
		if n == "" {
			continue
		}
		if _, ok := base.TokenID(n); ok {
			continue
		}
		if _, dup := e.ids[n]; dup {
			continue
		}
		e.ids[n] = base.VocabSize() + len(e.added)
		e.added = append(e.added, n)
	}
	if len(e.added) == 0 {
		return base
	}
	e.order = append([]string(nil), e.added...)
	sort.SliceStable(e.order, func(i, j int) bool { return len(e.order[i]) > len(e.order[j]) })
	return e
}

// Added lists the tokens WithSpecial appended, in id order.
func (e *Extended) Added() []string { return append([]string(nil), e.added...) }

// Base is the tokenizer that was extended.
func (e *Extended) Base() Pretrained { return e.base }

// VocabSize implements Tokenizer.
func (e *Extended) VocabSize() int { return e.base.VocabSize() + len(e.added) }

// TokenID implements Tokenizer: an added token's id, else the base's.
func (e *Extended) TokenID(s string) (int, bool) {
	if id, ok := e.ids[s]; ok {
		return id, true
	}
	return e.base.TokenID(s)
}

// Encode implements Tokenizer: added tokens are cut out first, the text
// between them goes to the base tokenizer.
func (e *Extended) Encode(text string) []int {
	var out []int
	for text != "" {
		at, tok := -1, ""
		for _, t := range e.order {
			if i := strings.Index(text, t); i >= 0 && (at < 0 || i < at) {
				at, tok = i, t
			}
		}
		if at < 0 {
			return append(out, e.base.Encode(text)...)
		}
		if at > 0 {
			out = append(out, e.base.Encode(text[:at])...)
		}
		out = append(out, e.ids[tok])
		text = text[at+len(tok):]
	}
	return out
}

// Decode implements Tokenizer: runs of base ids decode with the base,
// added ids as their text.
func (e *Extended) Decode(ids []int) (string, error) {
	var b strings.Builder
	n := e.base.VocabSize()
	start := 0
	flush := func(end int) error {
		if end > start {
			s, err := e.base.Decode(ids[start:end])
			if err != nil {
				return err
			}
			b.WriteString(s)
		}
		return nil
	}
	for i, id := range ids {
		if id < n {
			continue
		}
		if id >= e.VocabSize() || id < 0 {
			return "", fmt.Errorf("tokenizer: id %d at position %d is outside the vocabulary of %d", id, i, e.VocabSize())
		}
		if err := flush(i); err != nil {
			return "", err
		}
		b.WriteString(e.added[id-n])
		start = i + 1
	}
	if err := flush(len(ids)); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Specials implements Pretrained: the base's, with the added tokens.
func (e *Extended) Specials() Specials {
	s := e.base.Specials()
	for i, t := range e.added {
		s.Tokens = append(s.Tokens, SpecialToken{ID: e.base.VocabSize() + i, Content: t, Special: true})
	}
	return s
}

// Token implements Pretrained.
func (e *Extended) Token(id int) (string, error) {
	if n := e.base.VocabSize(); id >= n && id < e.VocabSize() {
		return e.added[id-n], nil
	}
	return e.base.Token(id)
}

// Files implements Pretrained: the base's files, unchanged (the added
// tokens are Loom's; an export records them in its config).
func (e *Extended) Files() []File { return e.base.Files() }
