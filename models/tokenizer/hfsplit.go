package tokenizer

import (
	"regexp"
	"unicode"
	"unicode/utf8"
)

// The split patterns Hugging Face files use. Go's RE2 has no lookahead, so
// the three that end in `\s+(?!\S)|\s+` are scanned by hand below (gpt2Scan,
// qwenScan), and Loom's own (loomPattern, what HFFiles writes) by
// pretokenize; other patterns are compiled with regexp when RE2 accepts them.
const (
	gpt2Pattern   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// matcher returns the non-overlapping matches of a pattern in s, left to
// right, as [start, end) byte offsets.
type matcher func(s string) [][2]int

// patternMatcher returns the matcher for a Split or ByteLevel regex: the
// hand-coded scanners for the known lookahead patterns, else RE2.
func patternMatcher(p string) (matcher, error) {
	switch p {
	case gpt2Pattern:
		return scanAll(gpt2Scan), nil
	case qwen2Pattern:
		return scanAll(func(s string) int { return qwenScan(s, 1) }), nil
	case llama3Pattern:
		return scanAll(func(s string) int { return qwenScan(s, 3) }), nil
	case loomPattern:
		return func(s string) [][2]int {
			var out [][2]int
			at := 0
			for _, p := range pretokenize([]byte(s)) {
				out = append(out, [2]int{at, at + len(p)})
				at += len(p)
			}
			return out
		}, nil
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, err
	}
	return func(s string) [][2]int {
		var out [][2]int
		for _, m := range re.FindAllStringIndex(s, -1) {
			if m[1] > m[0] {
				out = append(out, [2]int{m[0], m[1]})
			}
		}
		return out
	}, nil
}

// scanAll turns a scanner (the length of the match at the start of s, 0 for
// none) into a matcher. The known patterns match every non-empty string, so
// a 0 only skips one character defensively.
func scanAll(scan func(string) int) matcher {
	return func(s string) [][2]int {
		var out [][2]int
		for i := 0; i < len(s); {
			n := scan(s[i:])
			if n == 0 {
				_, l := utf8.DecodeRuneInString(s[i:])
				i += l
				continue
			}
			out = append(out, [2]int{i, i + n})
			i += n
		}
		return out
	}
}

// Character classes of the patterns. \s is Unicode White_Space (what
// Oniguruma and Rust's regex use); bytes that are not valid UTF-8 decode as
// U+FFFD and count as "other" (neither space, letter nor number).
func isL(r rune) bool  { return unicode.IsLetter(r) }
func isN(r rune) bool  { return unicode.IsNumber(r) }
func isWS(r rune) bool { return unicode.IsSpace(r) }
func isOther(r rune) bool {
	return !isWS(r) && !isL(r) && !isN(r)
}

// run returns the byte length of the longest prefix of s whose runes all
// satisfy f.
func run(s string, f func(rune) bool) int {
	n := 0
	for n < len(s) {
		r, l := utf8.DecodeRuneInString(s[n:])
		if !f(r) {
			break
		}
		n += l
	}
	return n
}

// wsTail matches `\s+(?!\S)|\s+` at the start of s: the white-space run,
// less its last character when a non-space follows and the run is longer
// than one character (the lookahead gives that character to the next
// pre-token).
func wsTail(s string) int {
	n := run(s, isWS)
	if n == 0 || n == len(s) {
		return n
	}
	_, last := utf8.DecodeLastRuneInString(s[:n])
	if n > last {
		return n - last
	}
	return n
}

// contraction matches 's 't 're 've 'm 'll 'd, ignoring case if fold (the
// (?i:...) group; 's also matches the long s ſ, U+017F, which folds to s).
func contraction(s string, fold bool) int {
	if len(s) < 2 || s[0] != '\'' {
		return 0
	}
	lower := func(i int) (rune, int) {
		r, l := utf8.DecodeRuneInString(s[i:])
		if fold {
			if r == 'ſ' {
				r = 's'
			} else if r >= 'A' && r <= 'Z' {
				r += 'a' - 'A'
			}
		}
		return r, l
	}
	r1, l1 := lower(1)
	switch r1 {
	case 's', 't', 'm', 'd':
		return 1 + l1
	case 'r', 'v', 'l':
		if 1+l1 < len(s) {
			r2, l2 := lower(1 + l1)
			if (r1 == 'r' && r2 == 'e') || (r1 == 'v' && r2 == 'e') || (r1 == 'l' && r2 == 'l') {
				return 1 + l1 + l2
			}
		}
	}
	return 0
}

// gpt2Scan matches gpt2Pattern at the start of s, trying the alternatives
// in order as a backtracking engine does.
func gpt2Scan(s string) int {
	if n := contraction(s, false); n > 0 {
		return n
	}
	r0, l0 := utf8.DecodeRuneInString(s)
	for _, class := range []func(rune) bool{isL, isN, isOther} {
		if r0 == ' ' && l0 < len(s) {
			if n := run(s[l0:], class); n > 0 {
				return l0 + n
			}
		}
		if class(r0) {
			return run(s, class)
		}
	}
	return wsTail(s)
}

// qwenScan matches qwen2Pattern (digits = 1) or llama3Pattern (digits = 3)
// at the start of s.
func qwenScan(s string, digits int) int {
	if n := contraction(s, true); n > 0 {
		return n
	}
	r0, l0 := utf8.DecodeRuneInString(s)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if r0 != '\r' && r0 != '\n' && !isL(r0) && !isN(r0) {
		if n := run(s[l0:], isL); n > 0 {
			return l0 + n
		}
	}
	if isL(r0) {
		return run(s, isL)
	}
	// \p{N} or \p{N}{1,3}
	if isN(r0) {
		n := 0
		for k := 0; k < digits && n < len(s); k++ {
			r, l := utf8.DecodeRuneInString(s[n:])
			if !isN(r) {
				break
			}
			n += l
		}
		return n
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	start := 0
	if r0 == ' ' && run(s[l0:], isOther) > 0 {
		start = l0
	}
	if n := run(s[start:], isOther); n > 0 {
		n += start
		return n + run(s[n:], func(r rune) bool { return r == '\r' || r == '\n' })
	}
	// \s*[\r\n]+ : through the last \r or \n of the white-space run
	ws := run(s, isWS)
	for i := ws - 1; i >= 0; i-- {
		if s[i] == '\r' || s[i] == '\n' {
			return i + 1
		}
	}
	return wsTail(s)
}

// byteToRune is GPT-2's bytes_to_unicode: printable Latin-1 bytes map to
// themselves, the other 68 to U+0100 upward in byte order (space is Ġ,
// newline Ċ). runeToByte inverts it.
var byteToRune, runeToByte = func() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := make(map[rune]byte, 256)
	n := rune(0)
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			b2r[b] = rune(b)
		} else {
			b2r[b] = 256 + n
			n++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}()

// byteLevel maps the bytes of s to GPT-2's printable runes.
func byteLevel(s string) string {
	out := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		out[i] = byteToRune[s[i]]
	}
	return string(out)
}
