package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
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

// Open reads a JSON tokenizer file and builds it with the loader registered
// for its "format" field ("loom-bpe-v1" is built in). Errors start with the
// path.
func Open(path string) (Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
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
