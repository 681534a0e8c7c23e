package tokenizer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Pretrained is implemented by the tokenizers read from a pretrained
// model's files (*SentencePiece from a tokenizer.model, *HF from a Hugging
// Face tokenizer.json). It adds to Tokenizer what a trainer needs to feed
// the model as it was trained: the ids of BOS, EOS and PAD, whether the
// original pipeline prepends BOS or appends EOS, the special tokens, the
// chat template, and the files themselves so that an export can copy them
// next to the weights unchanged. Test for it with a type assertion:
//
//	if p, ok := tok.(tokenizer.Pretrained); ok { sp := p.Specials() ... }
type Pretrained interface {
	Tokenizer
	// Specials describes the special tokens. The returned value is a copy.
	Specials() Specials
	// Token returns the vocabulary entry of an id as the file spells it
	// ("▁the", "Ġthe", "<0x0A>", "<s>").
	Token(id int) (string, error)
	// Files returns the tokenizer files as they were read, byte for byte,
	// under their base names (tokenizer.json, tokenizer_config.json,
	// chat_template.jinja, tokenizer.model). WriteFiles writes them.
	Files() []File
}

// Specials are a pretrained tokenizer's special tokens and how the original
// pipeline uses them. An id is -1 when the tokenizer has no such token.
type Specials struct {
	BOS, EOS, PAD, UNK int
	// AddBOS and AddEOS say whether the original pipeline puts BOS before
	// (EOS after) every encoded text: from tokenizer_config.json's
	// add_bos_token/add_eos_token when given, else from tokenizer.json's
	// TemplateProcessing post-processor; a bare SentencePiece model says
	// AddBOS (the LLaMA and sentencepiece-trainer convention) when it has a
	// BOS piece. Encode never adds them: the caller does, as Loom's data
	// pipeline adds its own.
	AddBOS, AddEOS bool
	// Tokens lists the added tokens of a tokenizer.json, or the CONTROL and
	// USER_DEFINED pieces of a SentencePiece model, in id order.
	Tokens []SpecialToken
	// ChatTemplate is the default Jinja chat template ("" if none), as
	// text: Loom carries it but does not render it. ChatTemplates holds
	// the named ones when tokenizer_config.json lists several.
	ChatTemplate  string
	ChatTemplates map[string]string
}

// SpecialToken is one added token (tokenizer.json added_tokens) or control
// or user-defined piece. Special is false for tokens that are matched whole
// but are ordinary text (user-defined symbols, added_tokens with "special":
// false).
type SpecialToken struct {
	ID      int
	Content string
	Special bool
}

// File is one tokenizer file: its base name and its bytes.
type File struct {
	Name string
	Data []byte
}

// WriteFiles writes a pretrained tokenizer's files (Pretrained.Files) into
// dir unchanged, creating dir if needed: what an export into a Hugging Face
// model directory needs. It fails for a tokenizer that is not Pretrained.
func WriteFiles(dir string, t Tokenizer) error {
	p, ok := t.(Pretrained)
	if !ok {
		return fmt.Errorf("tokenizer %T was not read from pretrained files; save it with Save", t)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range p.Files() {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// OpenDir opens the tokenizer of a Hugging Face model directory:
// tokenizer.json (with tokenizer_config.json and chat_template.jinja when
// present) if it exists, else tokenizer.model (SentencePiece, with
// tokenizer_config.json when present). Errors start with the file's path.
func OpenDir(dir string) (Pretrained, error) {
	return OpenFiles(dir, func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return b, err
	})
}

// OpenFiles is OpenDir over any store of files: read returns a file's
// bytes, or nil and no error when the file does not exist; where names the
// directory in errors (an s3:// prefix, say).
func OpenFiles(where string, read func(name string) ([]byte, error)) (Pretrained, error) {
	cfg, err := read("tokenizer_config.json")
	if err != nil {
		return nil, err
	}
	jinja, err := read("chat_template.jinja")
	if err != nil {
		return nil, err
	}
	if js, err := read("tokenizer.json"); err != nil {
		return nil, err
	} else if js != nil {
		t, err := ParseHF(js, cfg, jinja)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", errPath(where, err, "tokenizer.json"), err)
		}
		t.addFile("tokenizer.json", js, cfg, jinja)
		return t, nil
	}
	if m, err := read("tokenizer.model"); err != nil {
		return nil, err
	} else if m != nil {
		t, err := ParseSentencePiece(m)
		if err == nil && cfg != nil {
			err = t.applyConfig(cfg, jinja)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", errPath(where, err, "tokenizer.model"), err)
		}
		t.addFile("tokenizer.model", m, cfg, jinja)
		return t, nil
	}
	return nil, fmt.Errorf("%s: no tokenizer.json or tokenizer.model: %w", where, ErrNoTokenizer)
}

// ErrNoTokenizer is wrapped by OpenFiles and OpenDir when the directory
// holds no tokenizer file.
var ErrNoTokenizer = errors.New("no tokenizer files")

// configError marks an error found in tokenizer_config.json; its message
// starts with that file's name.
type configError struct{ err error }

func (e configError) Error() string { return "tokenizer_config.json: " + e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// errPath is what OpenDir puts before an error: the directory for an error
// in tokenizer_config.json (whose message names that file), else the path
// of the tokenizer file.
func errPath(dir string, err error, file string) string {
	var ce configError
	if errors.As(err, &ce) {
		return dir
	}
	return filepath.Join(dir, file)
}

// fileSet builds the File list of a tokenizer read from main (and cfg and
// jinja when present).
func fileSet(name string, main, cfg, jinja []byte) []File {
	fs := []File{{Name: name, Data: main}}
	if cfg != nil {
		fs = append(fs, File{Name: "tokenizer_config.json", Data: cfg})
	}
	if jinja != nil {
		fs = append(fs, File{Name: "chat_template.jinja", Data: jinja})
	}
	return fs
}

// specialsCopy returns a deep copy of s.
func specialsCopy(s Specials) Specials {
	s.Tokens = append([]SpecialToken(nil), s.Tokens...)
	if s.ChatTemplates != nil {
		m := make(map[string]string, len(s.ChatTemplates))
		for k, v := range s.ChatTemplates {
			m[k] = v
		}
		s.ChatTemplates = m
	}
	return s
}

func filesCopy(fs []File) []File {
	out := make([]File, len(fs))
	for i, f := range fs {
		out[i] = File{Name: f.Name, Data: append([]byte(nil), f.Data...)}
	}
	return out
}

// roleID implements the Loom role names in TokenID for pretrained
// tokenizers: "<bos>", "<eos>" and "<pad>" (the constants BOS, EOS, Pad)
// name the tokenizer's BOS, EOS and PAD tokens when the vocabulary has no
// token spelled that way, so models.SpecialFrom finds LLaMA's "<s>".
func roleID(s *Specials, name string) (int, bool) {
	id := -1
	switch name {
	case BOS:
		id = s.BOS
	case EOS:
		id = s.EOS
	case Pad:
		id = s.PAD
	}
	return id, id >= 0
}
