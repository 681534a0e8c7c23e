package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// A Loader builds a tokenizer from the bytes of its file.
type Loader func(data []byte) (Tokenizer, error)

var (
	loadersMu sync.RWMutex
	loaders   = map[string]Loader{
		Format: func(b []byte) (Tokenizer, error) { return Unmarshal(b) },
	}
)

// Register makes Open accept JSON tokenizer files whose top-level "format"
// field is format: the way to plug in another tokenizer (a user's own file
// format) without changing the models, which see only the Tokenizer
// interface. Registering a format twice panics.
func Register(format string, l Loader) {
	loadersMu.Lock()
	defer loadersMu.Unlock()
	if _, dup := loaders[format]; dup {
		panic(fmt.Sprintf("tokenizer: format %q registered twice", format))
	}
	loaders[format] = l
}

// Formats lists the registered formats.
func Formats() []string {
	loadersMu.RLock()
	defer loadersMu.RUnlock()
	out := make([]string, 0, len(loaders))
	for f := range loaders {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// Open reads a tokenizer file: a SentencePiece model (a ".model" file, or
// any file that is not JSON), a Hugging Face tokenizer.json (a JSON object
// with a "model" and no "format" field; a tokenizer_config.json and
// chat_template.jinja in the same directory are read too), or a JSON file
// built with the loader registered for its "format" field ("loom-bpe-v1"
// is built in). Errors start with the path.
func Open(path string) (Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(path, ".model") || !json.Valid(b) {
		t, err := ParseSentencePiece(b)
		if err != nil {
			if !strings.HasSuffix(path, ".model") {
				return nil, fmt.Errorf("%s: neither JSON nor a SentencePiece model: %w", path, err)
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		t.addFile(filepath.Base(path), b, nil, nil)
		return t, nil
	}
	if isHFTokenizerJSON(b) {
		dir := filepath.Dir(path)
		side := func(name string) ([]byte, error) {
			s, err := os.ReadFile(filepath.Join(dir, name))
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil
			}
			return s, err
		}
		cfg, err := side("tokenizer_config.json")
		if err != nil {
			return nil, err
		}
		jinja, err := side("chat_template.jinja")
		if err != nil {
			return nil, err
		}
		t, err := ParseHF(b, cfg, jinja)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", errPath(dir, err, filepath.Base(path)), err)
		}
		t.addFile(filepath.Base(path), b, cfg, jinja)
		return t, nil
	}
	var head struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("%s: not a JSON tokenizer file: %w", path, err)
	}
	loadersMu.RLock()
	l, ok := loaders[head.Format]
	loadersMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%s: format %q: no tokenizer registered for it (have %v)", path, head.Format, Formats())
	}
	t, err := l(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}
