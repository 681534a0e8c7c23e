package tokenizer

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// charsmap is a SentencePiece precompiled_charsmap: a darts-clone double
// array trie over UTF-8 byte strings whose values are offsets into a blob of
// NUL-terminated replacement strings. The bytes are laid out as
//
//	<trie size, uint32 little-endian><trie units, uint32 LE each><replacements>
//
// (sentencepiece normalizer.cc, DecodePrecompiledCharsMap). nmt_nfkc's map is
// NFKC plus sentencepiece's own rules (control characters removed, tab and
// newline become space, ...), so using it directly gives exactly what
// sentencepiece does, which NFKC alone would not.
type charsmap struct {
	units []uint32
	repl  []byte
}

func parseCharsmap(b []byte) (*charsmap, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("normalizer_spec.precompiled_charsmap: %d bytes, shorter than its 4-byte header", len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) >= uint64(len(b)) || n%4 != 0 || n == 0 {
		return nil, fmt.Errorf("normalizer_spec.precompiled_charsmap: trie size %d does not fit the %d-byte blob in 4-byte units", n, len(b))
	}
	c := &charsmap{units: make([]uint32, n/4), repl: b[4+n:]}
	for i := range c.units {
		c.units[i] = binary.LittleEndian.Uint32(b[4+4*i:])
	}
	return c, nil
}

// longest returns the replacement for the longest key that is a prefix of s
// and that key's length, or ("", 0) if none is. Like sentencepiece it looks
// at the first 32 prefix matches only (darts-clone commonPrefixSearch with
// kMaxTrieResultsSize = 32); keys are code-point sequences, so real maps
// never come near that.
func (c *charsmap) longest(s string) (string, int) {
	const maxResults = 32
	unit := func(pos uint32) (uint32, bool) {
		if int(pos) >= len(c.units) {
			return 0, false
		}
		return c.units[pos], true
	}
	offset := func(u uint32) uint32 { return (u >> 10) << ((u & (1 << 9)) >> 6) }
	u, ok := unit(0)
	if !ok {
		return "", 0
	}
	pos := offset(u)
	bestLen, bestVal, found := 0, uint32(0), 0
	for i := 0; i < len(s); i++ {
		k := s[i]
		pos ^= uint32(k)
		if u, ok = unit(pos); !ok || u&((1<<31)|0xFF) != uint32(k) {
			break
		}
		pos ^= offset(u)
		if (u>>8)&1 == 1 {
			leaf, ok := unit(pos)
			if !ok {
				break
			}
			if found < maxResults && i+1 > bestLen {
				bestLen, bestVal = i+1, leaf&((1<<31)-1)
			}
			found++
		}
	}
	if bestLen == 0 || int(bestVal) >= len(c.repl) {
		return "", 0
	}
	r := c.repl[bestVal:]
	if end := strings.IndexByte(string(r), 0); end >= 0 {
		r = r[:end]
	}
	return string(r), bestLen
}

// spNormalizer is sentencepiece's Normalizer (normalizer.cc, Normalize):
// the charsmap rule for each longest matching prefix (user-defined symbols
// pass through unchanged), invalid UTF-8 bytes become U+FFFD one byte at a
// time, then leading, trailing and repeated spaces are dropped if
// remove_extra_whitespaces, "▁" is prepended if add_dummy_prefix, and spaces
// become "▁" if escape_whitespaces.
type spNormalizer struct {
	cmap           *charsmap
	user           *trie // user-defined symbols, matched before the charsmap
	addDummyPrefix bool
	removeExtraWS  bool
	escapeWS       bool
}

const spaceSymbol = "\u2581" // ▁

// prefix returns the normalised form of the longest rule at the start of s
// and how many bytes of s it consumed.
func (n *spNormalizer) prefix(s string) (string, int) {
	if n.user != nil {
		if l := n.user.longest(s); l > 0 {
			return s[:l], l
		}
	}
	if n.cmap != nil {
		if r, l := n.cmap.longest(s); l > 0 {
			return r, l
		}
	}
	r, l := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && l <= 1 {
		return "\uFFFD", 1
	}
	return s[:l], l
}

func (n *spNormalizer) normalize(s string) string {
	if n.removeExtraWS {
		for len(s) > 0 {
			p, l := n.prefix(s)
			if p != " " {
				break
			}
			s = s[l:]
		}
	}
	if s == "" {
		return ""
	}
	space := " "
	if n.escapeWS {
		space = spaceSymbol
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/4 + 3)
	if n.addDummyPrefix {
		b.WriteString(space)
	}
	prevSpace := n.removeExtraWS
	for len(s) > 0 {
		p, l := n.prefix(s)
		s = s[l:]
		if prevSpace {
			p = strings.TrimLeft(p, " ")
		}
		if p != "" {
			if n.escapeWS {
				b.WriteString(strings.ReplaceAll(p, " ", spaceSymbol))
			} else {
				b.WriteString(p)
			}
			prevSpace = strings.HasSuffix(p, " ")
		}
		if !n.removeExtraWS {
			prevSpace = false
		}
	}
	out := b.String()
	if n.removeExtraWS {
		for strings.HasSuffix(out, space) {
			out = out[:len(out)-len(space)]
		}
	}
	return out
}
