package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// charTok is a user tokenizer: one id per byte, specials from the file.
type charTok struct{ special []string }

func (c charTok) Encode(s string) []int {
	out := make([]int, len(s))
	for i := 0; i < len(s); i++ {
		out[i] = int(s[i])
	}
	return out
}
func (c charTok) Decode(ids []int) (string, error) {
	b := make([]byte, len(ids))
	for i, id := range ids {
		if id < 0 || id > 255 {
			return "", fmt.Errorf("ids[%d] = %d", i, id)
		}
		b[i] = byte(id)
	}
	return string(b), nil
}
func (c charTok) VocabSize() int { return 256 + len(c.special) }
func (c charTok) TokenID(s string) (int, bool) {
	for i, sp := range c.special {
		if sp == s {
			return 256 + i, true
		}
	}
	return 0, false
}

func TestOpenRegistered(t *testing.T) {
	Register("test-chars", func(b []byte) (Tokenizer, error) { return charTok{special: []string{"<image>"}}, nil })
	dir := t.TempDir()
	user := filepath.Join(dir, "user.json")
	os.WriteFile(user, []byte(`{"format": "test-chars"}`), 0o644)
	tok, err := Open(user)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := tok.TokenID("<image>"); !ok || id != 256 {
		t.Errorf("user tokenizer TokenID(<image>) = %d, %v", id, ok)
	}
	// The built-in format loads through Open too.
	bpe, _ := NewBPE([][2]int{{'a', 'b'}}, DefaultSpecial)
	own := filepath.Join(dir, "tok.json")
	if err := Save(own, bpe); err != nil {
		t.Fatal(err)
	}
	if tok, err := Open(own); err != nil || tok.VocabSize() != bpe.VocabSize() {
		t.Fatalf("Open(loom-bpe-v1) = %v, %v", tok, err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"format": "sentencepiece"}`), 0o644)
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), `format "sentencepiece"`) || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("Open(unknown format) error = %v", err)
	}
}
