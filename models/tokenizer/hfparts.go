package tokenizer

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// jsonObj is one tokenizer.json component: a {"type": ...} object.
type jsonObj map[string]json.RawMessage

// parseObj decodes a component at path; a JSON null gives (nil, nil).
func parseObj(v json.RawMessage, path string) (jsonObj, string, error) {
	if len(v) == 0 || string(v) == "null" {
		return nil, "", nil
	}
	var o jsonObj
	if err := json.Unmarshal(v, &o); err != nil {
		return nil, "", fmt.Errorf("%s: want an object, got %s", path, short(v))
	}
	var typ string
	if err := json.Unmarshal(o["type"], &typ); err != nil {
		return nil, "", fmt.Errorf("%s.type: want a string, got %s", path, short(o["type"]))
	}
	return o, typ, nil
}

func (o jsonObj) list(key, path string) ([]json.RawMessage, error) {
	var l []json.RawMessage
	if err := json.Unmarshal(o[key], &l); err != nil {
		return nil, fmt.Errorf("%s.%s: want a list, got %s", path, key, short(o[key]))
	}
	return l, nil
}

// get decodes o[key] into dst if present and not null.
func (o jsonObj) get(key, path string, dst any) error {
	v, ok := o[key]
	if !ok || string(v) == "null" {
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("%s.%s: %s is not %s", path, key, short(v), kindOf(dst))
	}
	return nil
}

func kindOf(dst any) string {
	switch dst.(type) {
	case *string:
		return "a string"
	case *bool:
		return "a boolean"
	case *int:
		return "an integer"
	}
	return "valid"
}

func unsupported(path, typ string) error {
	return fmt.Errorf("%s.type %q: not supported", path, typ)
}

// pattern reads a Split/Replace pattern {"String": s} or {"Regex": r}.
func (o jsonObj) pattern(path string) (lit string, re string, err error) {
	var p struct {
		String *string
		Regex  *string
	}
	if err := json.Unmarshal(o["pattern"], &p); err != nil || (p.String == nil) == (p.Regex == nil) {
		return "", "", fmt.Errorf("%s.pattern: want {\"String\": ...} or {\"Regex\": ...}, got %s", path, short(o["pattern"]))
	}
	if p.String != nil {
		return *p.String, "", nil
	}
	return "", *p.Regex, nil
}

// ---- normalizers ----

type normFunc func(string) string

func parseNormalizer(v json.RawMessage, path string) (normFunc, error) {
	o, typ, err := parseObj(v, path)
	if o == nil || err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		l, err := o.list("normalizers", path)
		if err != nil {
			return nil, err
		}
		var fs []normFunc
		for i, e := range l {
			f, err := parseNormalizer(e, fmt.Sprintf("%s.normalizers[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if f != nil {
				fs = append(fs, f)
			}
		}
		return func(s string) string {
			for _, f := range fs {
				s = f(s)
			}
			return s
		}, nil
	case "NFC":
		return norm.NFC.String, nil
	case "NFD":
		return norm.NFD.String, nil
	case "NFKC":
		return norm.NFKC.String, nil
	case "NFKD":
		return norm.NFKD.String, nil
	case "Lowercase":
		return strings.ToLower, nil
	case "Prepend":
		var p string
		if err := o.get("prepend", path, &p); err != nil {
			return nil, err
		}
		return func(s string) string {
			if s == "" {
				return s
			}
			return p + s
		}, nil
	case "Replace":
		lit, re, err := o.pattern(path)
		if err != nil {
			return nil, err
		}
		var content string
		if err := o.get("content", path, &content); err != nil {
			return nil, err
		}
		if re == "" {
			if lit == "" {
				return nil, fmt.Errorf("%s.pattern: empty string", path)
			}
			return func(s string) string { return strings.ReplaceAll(s, lit, content) }, nil
		}
		rx, err := regexp.Compile(re)
		if err != nil {
			return nil, fmt.Errorf("%s.pattern.Regex %q: not supported by Go's regexp: %v", path, re, err)
		}
		return func(s string) string { return rx.ReplaceAllLiteralString(s, content) }, nil
	case "Strip":
		left, right := true, true
		if err := o.get("strip_left", path, &left); err != nil {
			return nil, err
		}
		if err := o.get("strip_right", path, &right); err != nil {
			return nil, err
		}
		return func(s string) string {
			if left {
				s = strings.TrimLeftFunc(s, unicode.IsSpace)
			}
			if right {
				s = strings.TrimRightFunc(s, unicode.IsSpace)
			}
			return s
		}, nil
	}
	return nil, unsupported(path, typ)
}

// ---- pre-tokenizers ----

// preTok is a pre-token: its text and whether it starts at the beginning of
// the whole input (Metaspace's prepend_scheme "first").
type preTok struct {
	text    string
	atStart bool
}

type preFunc func([]preTok) []preTok

// eachSplit applies f to every pre-token.
func eachSplit(f func(preTok) []preTok) preFunc {
	return func(in []preTok) []preTok {
		var out []preTok
		for _, p := range in {
			out = append(out, f(p)...)
		}
		return out
	}
}

// splitBy cuts p at the matches of m with a Split behaviour.
func splitBy(p preTok, m matcher, behavior string) []preTok {
	var out []preTok
	emit := func(s string, at int) {
		if s != "" {
			out = append(out, preTok{text: s, atStart: p.atStart && at == 0})
		}
	}
	prev := 0
	pendingStart := -1 // MergedWithNext: start of the match waiting for its text
	for _, mt := range m(p.text) {
		gap, match := p.text[prev:mt[0]], p.text[mt[0]:mt[1]]
		switch behavior {
		case "Isolated":
			emit(gap, prev)
			emit(match, mt[0])
		case "Removed":
			emit(gap, prev)
		case "MergedWithPrevious":
			emit(gap+match, prev)
		case "MergedWithNext":
			if pendingStart >= 0 {
				emit(p.text[pendingStart:mt[0]], pendingStart)
			} else {
				emit(gap, prev)
			}
			pendingStart = mt[0]
		}
		prev = mt[1]
	}
	if pendingStart >= 0 {
		emit(p.text[pendingStart:], pendingStart)
	} else {
		emit(p.text[prev:], prev)
	}
	return out
}

func parsePreTokenizer(v json.RawMessage, path string) (preFunc, error) {
	o, typ, err := parseObj(v, path)
	if o == nil || err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		l, err := o.list("pretokenizers", path)
		if err != nil {
			return nil, err
		}
		var fs []preFunc
		for i, e := range l {
			f, err := parsePreTokenizer(e, fmt.Sprintf("%s.pretokenizers[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if f != nil {
				fs = append(fs, f)
			}
		}
		return func(p []preTok) []preTok {
			for _, f := range fs {
				p = f(p)
			}
			return p
		}, nil
	case "ByteLevel":
		prefix, useRegex := true, true
		if err := o.get("add_prefix_space", path, &prefix); err != nil {
			return nil, err
		}
		if err := o.get("use_regex", path, &useRegex); err != nil {
			return nil, err
		}
		m := scanAll(gpt2Scan)
		return eachSplit(func(p preTok) []preTok {
			if prefix && !strings.HasPrefix(p.text, " ") {
				p.text = " " + p.text
			}
			parts := []preTok{p}
			if useRegex {
				parts = splitBy(p, m, "Isolated")
			}
			for i := range parts {
				parts[i].text = byteLevel(parts[i].text)
			}
			return parts
		}), nil
	case "Split":
		lit, re, err := o.pattern(path)
		if err != nil {
			return nil, err
		}
		var behavior string
		var invert bool
		if err := o.get("behavior", path, &behavior); err != nil {
			return nil, err
		}
		if err := o.get("invert", path, &invert); err != nil {
			return nil, err
		}
		switch behavior {
		case "Isolated", "Removed", "MergedWithPrevious", "MergedWithNext":
		default:
			return nil, fmt.Errorf("%s.behavior %q: not supported", path, behavior)
		}
		if invert {
			return nil, fmt.Errorf("%s.invert: true is not supported", path)
		}
		if re == "" {
			re = regexp.QuoteMeta(lit)
		}
		m, err := patternMatcher(re)
		if err != nil {
			return nil, fmt.Errorf("%s.pattern.Regex %q: not supported (not one of the known lookahead patterns, and Go's regexp says: %v)", path, re, err)
		}
		return eachSplit(func(p preTok) []preTok { return splitBy(p, m, behavior) }), nil
	case "Metaspace":
		mt, err := parseMetaspace(o, path)
		if err != nil {
			return nil, err
		}
		sepM := scanAll(func(s string) int {
			if strings.HasPrefix(s, mt.repl) {
				return len(mt.repl)
			}
			return 0
		})
		return eachSplit(func(p preTok) []preTok {
			p.text = strings.ReplaceAll(p.text, " ", mt.repl)
			if !strings.HasPrefix(p.text, mt.repl) && (mt.scheme == "always" || (mt.scheme == "first" && p.atStart)) {
				p.text = mt.repl + p.text
			}
			if !mt.split {
				return []preTok{p}
			}
			return splitBy(p, sepM, "MergedWithNext")
		}), nil
	case "Digits":
		var single bool
		if err := o.get("individual_digits", path, &single); err != nil {
			return nil, err
		}
		m := scanAll(func(s string) int {
			if r, l := utf8.DecodeRuneInString(s); single && isN(r) {
				return l
			}
			return run(s, isN)
		})
		return eachSplit(func(p preTok) []preTok { return splitBy(p, m, "Isolated") }), nil
	}
	return nil, unsupported(path, typ)
}

// metaspace holds the options of a Metaspace pre-tokenizer or decoder.
type metaspace struct {
	repl   string
	scheme string // always, first, never
	split  bool
}

func parseMetaspace(o jsonObj, path string) (metaspace, error) {
	mt := metaspace{repl: spaceSymbol, scheme: "always", split: true}
	if err := o.get("replacement", path, &mt.repl); err != nil {
		return mt, err
	}
	if mt.repl == "" {
		return mt, fmt.Errorf("%s.replacement: empty", path)
	}
	if _, ok := o["prepend_scheme"]; ok {
		if err := o.get("prepend_scheme", path, &mt.scheme); err != nil {
			return mt, err
		}
	} else if _, ok := o["add_prefix_space"]; ok { // files older than prepend_scheme
		prefix := true
		if err := o.get("add_prefix_space", path, &prefix); err != nil {
			return mt, err
		}
		if !prefix {
			mt.scheme = "never"
		}
	}
	switch mt.scheme {
	case "always", "first", "never":
	default:
		return mt, fmt.Errorf("%s.prepend_scheme %q: want always, first or never", path, mt.scheme)
	}
	if err := o.get("split", path, &mt.split); err != nil {
		return mt, err
	}
	return mt, nil
}

// ---- decoders ----

// decFunc is one step of tokenizers' decode_chain: tokens in, tokens out.
type decFunc func([]string) []string

func parseDecoder(v json.RawMessage, path string) (decFunc, error) {
	o, typ, err := parseObj(v, path)
	if o == nil || err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		l, err := o.list("decoders", path)
		if err != nil {
			return nil, err
		}
		var fs []decFunc
		for i, e := range l {
			f, err := parseDecoder(e, fmt.Sprintf("%s.decoders[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if f != nil {
				fs = append(fs, f)
			}
		}
		return func(t []string) []string {
			for _, f := range fs {
				t = f(t)
			}
			return t
		}, nil
	case "ByteLevel":
		return func(toks []string) []string {
			var b []byte
			for _, t := range toks {
				start := len(b)
				ok := true
				for _, r := range t {
					c, in := runeToByte[r]
					if !in {
						ok = false
						break
					}
					b = append(b, c)
				}
				if !ok { // not a byte-level token (an added token): its own bytes
					b = append(b[:start], t...)
				}
			}
			return []string{lossyUTF8(b)}
		}, nil
	case "Replace":
		lit, re, err := o.pattern(path)
		if err != nil {
			return nil, err
		}
		if re != "" || lit == "" {
			return nil, fmt.Errorf("%s.pattern: only a non-empty {\"String\": ...} is supported in a decoder", path)
		}
		var content string
		if err := o.get("content", path, &content); err != nil {
			return nil, err
		}
		return func(toks []string) []string {
			out := make([]string, len(toks))
			for i, t := range toks {
				out[i] = strings.ReplaceAll(t, lit, content)
			}
			return out
		}, nil
	case "ByteFallback":
		return decodeByteFallback, nil
	case "Fuse":
		return func(toks []string) []string { return []string{strings.Join(toks, "")} }, nil
	case "Strip":
		var content string
		var start, stop int
		if err := o.get("content", path, &content); err != nil {
			return nil, err
		}
		if err := o.get("start", path, &start); err != nil {
			return nil, err
		}
		if err := o.get("stop", path, &stop); err != nil {
			return nil, err
		}
		if r := []rune(content); len(r) != 1 {
			return nil, fmt.Errorf("%s.content: want one character, got %q", path, content)
		}
		c := []rune(content)[0]
		return func(toks []string) []string {
			out := make([]string, len(toks))
			for i, t := range toks {
				r := []rune(t)
				a := 0
				for a < len(r) && a < start && r[a] == c {
					a++
				}
				z := len(r)
				for z > a && len(r)-z < stop && r[z-1] == c {
					z--
				}
				out[i] = string(r[a:z])
			}
			return out
		}, nil
	case "Metaspace":
		mt, err := parseMetaspace(o, path)
		if err != nil {
			return nil, err
		}
		return func(toks []string) []string {
			out := make([]string, len(toks))
			for i, t := range toks {
				t = strings.ReplaceAll(t, mt.repl, " ")
				if i == 0 && mt.scheme != "never" {
					t = strings.TrimPrefix(t, " ")
				}
				out[i] = t
			}
			return out
		}, nil
	}
	return nil, unsupported(path, typ)
}

// decodeByteFallback turns runs of <0xNN> tokens into text; a run that is
// not valid UTF-8 becomes one U+FFFD per byte (tokenizers' ByteFallback).
func decodeByteFallback(toks []string) []string {
	var out []string
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if s := string(run); isValidUTF8(s) {
			out = append(out, s)
		} else {
			for range run {
				out = append(out, "\uFFFD")
			}
		}
		run = run[:0]
	}
	for _, t := range toks {
		if b, ok := hexBytePiece(t); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// hexBytePiece parses "<0xNN>" with either case of hex digit, as Rust's
// u8::from_str_radix does.
func hexBytePiece(t string) (byte, bool) {
	if len(t) != 6 || t[:3] != "<0x" || t[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range []byte(t[3:5]) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}
