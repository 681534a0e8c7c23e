package tokenizer

// Byte classes of the pre-tokenizer. Bytes >= 0x80 count as letters, so a
// word in a non-Latin script (UTF-8 multi-byte) stays one pre-token.
const (
	clsSpace = iota
	clsLetter
	clsDigit
	clsOther
)

func class(b byte) int {
	switch {
	case b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f':
		return clsSpace
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= 0x80:
		return clsLetter
	case b >= '0' && b <= '9':
		return clsDigit
	}
	return clsOther
}

// pretokenize cuts text into the pieces BPE merges within: a run of one
// class (letters, digits, other symbols) with at most one leading ' ', or a
// run of white space. As in GPT-2's pattern (`\s+(?!\S)`), the last space
// before a word belongs to the word. The pieces concatenate back to text.
func pretokenize(text []byte) [][]byte {
	var out [][]byte
	for i := 0; i < len(text); {
		c := class(text[i])
		if c == clsSpace {
			j := i
			for j < len(text) && class(text[j]) == clsSpace {
				j++
			}
			if j < len(text) && text[j-1] == ' ' {
				// Leave the last space to the word that follows.
				if j-1 > i {
					out = append(out, text[i:j-1])
				}
				i = j - 1
				k := j + 1
				for k < len(text) && class(text[k]) == class(text[j]) {
					k++
				}
				out = append(out, text[i:k])
				i = k
				continue
			}
			out = append(out, text[i:j])
			i = j
			continue
		}
		j := i + 1
		for j < len(text) && class(text[j]) == c {
			j++
		}
		out = append(out, text[i:j])
		i = j
	}
	return out
}
