package shard

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Input formats that Ingest reads.
const (
	FormatAuto   = "auto"
	FormatImages = "images" // JSONL of {"image": "a.jpg", "caption": "..."} next to the images
	FormatLLaVA  = "llava"  // LLaVA conversation JSON: [{"id", "image", "conversations": [{"from", "value"}]}]
	FormatWDS    = "wds"    // WebDataset tar shards: key.jpg|png + key.txt|json
	FormatText   = "text"   // .txt files, one document per non-empty line
	FormatJSONL  = "jsonl"  // JSONL of {"text": ...} (text) or {"tokens": [...]} (tokens)
)

// InputError is a bad input record: the file, the line (or tar member) and
// what is wrong with it.
type InputError struct {
	File string
	Line int    // 1-based line, 0 when not line-oriented
	What string // e.g. a tar member name
	Err  error
}

func (e *InputError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.What != "" {
		loc += " (" + e.What + ")"
	}
	return loc + ": " + e.Err.Error()
}

func (e *InputError) Unwrap() error { return e.Err }

// IngestOptions configures Ingest.
type IngestOptions struct {
	Format    string // one of the Format constants; auto detects from SRC
	ImageRoot string // where image paths in JSONL/JSON are relative to (default: that file's directory)
	// SkipBad skips bad records (counting them) instead of failing on the
	// first one.
	SkipBad bool
	Writer  WriterOptions // Kind is set by Ingest from the format
	// Progress, if set, is called after each record with the input bytes
	// consumed so far, the total, and the rows written.
	Progress func(done, total, rows int64)
}

// IngestStats summarises an ingest.
type IngestStats struct {
	Format     string
	Kind       Kind
	Rows       int64
	Skipped    int64
	SkipErrors []*InputError // the first 100 skipped records
	InputBytes int64
	Index      *Index
	// MetaFields are the JSONL fields, sorted, that are none of the
	// format's own (image, caption, text, ...) and were kept in each
	// row's meta object instead of being dropped.
	MetaFields []string
}

// DetectFormat guesses the input format of src from file names and, for
// JSONL, the keys of the first record.
func DetectFormat(src string) (string, error) {
	st, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("input %s: %w", src, err)
	}
	byExt := func(p string) string {
		switch strings.ToLower(filepath.Ext(p)) {
		case ".tar":
			return FormatWDS
		case ".json":
			return FormatLLaVA
		case ".txt":
			return FormatText
		case ".jsonl":
			return jsonlFormat(p)
		}
		return ""
	}
	if !st.IsDir() {
		if f := byExt(src); f != "" {
			return f, nil
		}
		return "", fmt.Errorf("input %s: cannot tell the format from the name; pass --format", src)
	}
	files, err := inputFiles(src, "")
	if err != nil {
		return "", err
	}
	found := map[string]bool{}
	for _, f := range files {
		if x := byExt(f); x != "" {
			found[x] = true
		}
	}
	for _, f := range []string{FormatWDS, FormatImages, FormatLLaVA, FormatJSONL, FormatText} {
		if found[f] {
			return f, nil
		}
	}
	return "", fmt.Errorf("input %s: no .tar, .jsonl, .json or .txt files found", src)
}

func jsonlFormat(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return FormatJSONL
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(line, &m) == nil {
			if _, ok := m["image"]; ok {
				return FormatImages
			}
		}
		break
	}
	return FormatJSONL
}

// inputFiles lists the files of src (a file or a directory, walked in
// lexical order) whose extension is ext (any when ext == "").
func inputFiles(src, ext string) ([]string, error) {
	st, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", src, err)
	}
	if !st.IsDir() {
		return []string{src}, nil
	}
	var out []string
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (ext == "" || strings.EqualFold(filepath.Ext(p), ext)) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", src, err)
	}
	sort.Strings(out)
	return out, nil
}

// Ingest converts the input at src into a dataset under prefix in store.
func Ingest(ctx context.Context, src string, store ObjectStore, prefix string, opts IngestOptions) (*IngestStats, error) {
	format := opts.Format
	if format == "" || format == FormatAuto {
		f, err := DetectFormat(src)
		if err != nil {
			return nil, err
		}
		format = f
	}
	var ext string
	var kind Kind
	switch format {
	case FormatImages:
		ext, kind = ".jsonl", KindImageText
	case FormatLLaVA:
		ext, kind = ".json", KindConversation
	case FormatWDS:
		ext, kind = ".tar", KindImageText
	case FormatText:
		ext, kind = ".txt", KindText
	case FormatJSONL:
		ext = ".jsonl"
	default:
		return nil, fmt.Errorf("unknown input format %q (want auto, images, llava, wds, text or jsonl)", format)
	}
	files, err := inputFiles(src, ext)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("input %s: no %s files", src, ext)
	}
	if format == FormatJSONL {
		kind = KindText
		if k, err := jsonlKind(files[0]); err == nil {
			kind = k
		}
	}
	st := &IngestStats{Format: format, Kind: kind}
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			st.InputBytes += fi.Size()
		}
	}
	wopts := opts.Writer
	wopts.Kind = kind
	w, err := NewWriter(ctx, store, prefix, wopts)
	if err != nil {
		return nil, err
	}
	in := &ingester{ctx: ctx, opts: opts, st: st, w: w}
	for _, f := range files {
		var err error
		switch format {
		case FormatImages:
			err = in.images(f)
		case FormatLLaVA:
			err = in.llava(f)
		case FormatWDS:
			err = in.wds(f)
		case FormatText:
			err = in.text(f)
		case FormatJSONL:
			err = in.jsonl(f, kind)
		}
		if err != nil {
			w.Abort()
			return st, err
		}
	}
	if w.Rows() == 0 {
		w.Abort()
		return st, fmt.Errorf("input %s: no valid records (%d bad ones skipped); nothing written", src, st.Skipped)
	}
	ix, err := w.Close()
	if err != nil {
		return st, err
	}
	st.Index = ix
	st.Rows = ix.Rows
	return st, nil
}

func jsonlKind(p string) (Kind, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var m map[string]json.RawMessage
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			if _, ok := m["tokens"]; ok {
				return KindTokens, nil
			}
			return KindText, nil
		}
	}
	return KindText, nil
}

type ingester struct {
	ctx  context.Context
	opts IngestOptions
	st   *IngestStats
	w    *Writer
	done int64
}

// bad handles a bad record: fail, or count and continue.
func (in *ingester) bad(e *InputError) error {
	if !in.opts.SkipBad {
		return e
	}
	in.st.Skipped++
	if len(in.st.SkipErrors) < 100 {
		in.st.SkipErrors = append(in.st.SkipErrors, e)
	}
	return nil
}

func (in *ingester) add(s Sample, file string, line int, what string) error {
	if err := in.w.Add(s); err != nil {
		var ve *sampleError
		if errors.As(err, &ve) {
			return in.bad(&InputError{File: file, Line: line, What: what, Err: err})
		}
		return err
	}
	return nil
}

func (in *ingester) progress(n int64) {
	in.done += n
	if in.opts.Progress != nil {
		in.opts.Progress(in.done, in.st.InputBytes, in.w.Rows())
	}
}

// lines calls fn for each non-empty line of file with its 1-based number.
func (in *ingester) lines(file string, fn func(line []byte, n int) error) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("input %s: %w", file, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	n := 0
	for sc.Scan() {
		n++
		if err := in.ctx.Err(); err != nil {
			return err
		}
		line := sc.Bytes()
		in.progress(int64(len(line) + 1))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := fn(line, n); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("input %s:%d: %w", file, n+1, err)
	}
	return nil
}

// loadImage reads an image file and decodes its header for format and size.
func loadImage(p string) (*Image, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return imageFromBytes(data)
}

func imageFromBytes(data []byte) (*Image, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("undecodable image: %w", err)
	}
	if format != "jpeg" && format != "png" {
		return nil, fmt.Errorf("image format %s, want jpeg or png", format)
	}
	return &Image{Format: format, Width: cfg.Width, Height: cfg.Height, Data: data}, nil
}

func (in *ingester) root(file string) string {
	if in.opts.ImageRoot != "" {
		return in.opts.ImageRoot
	}
	return filepath.Dir(file)
}

func (in *ingester) images(file string) error {
	root := in.root(file)
	return in.lines(file, func(line []byte, n int) error {
		var rec struct {
			ID      string          `json:"id"`
			Image   string          `json:"image"`
			Caption string          `json:"caption"`
			Meta    json.RawMessage `json:"meta"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			return in.bad(&InputError{File: file, Line: n, Err: fmt.Errorf("malformed JSON: %w", err)})
		}
		meta, err := in.keepFields(line, rec.Meta, "id", "image", "caption", "meta")
		if err != nil {
			return in.bad(&InputError{File: file, Line: n, Err: err})
		}
		rec.Meta = meta
		if rec.Image == "" {
			return in.bad(&InputError{File: file, Line: n, Err: errors.New(`no "image" field`)})
		}
		im, err := loadImage(filepath.Join(root, filepath.FromSlash(rec.Image)))
		if err != nil {
			return in.bad(&InputError{File: file, Line: n, What: rec.Image, Err: err})
		}
		id := rec.ID
		if id == "" {
			id = rec.Image
		}
		return in.add(Sample{ID: id, Image: im, Caption: rec.Caption, Meta: string(rec.Meta)}, file, n, rec.Image)
	})
}

// keepFields returns a record's meta with the record's other fields (all
// but known) added to it, so that ingest drops nothing: the meta object
// gains them (a key already in meta keeps meta's value); a meta that is
// not an object is kept under "meta". The names go into the stats once.
func (in *ingester) keepFields(line []byte, meta json.RawMessage, known ...string) (json.RawMessage, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(line, &all); err != nil {
		return nil, fmt.Errorf("want a JSON object: %w", err)
	}
	extra := map[string]json.RawMessage{}
	for k, v := range all {
		if !slices.Contains(known, k) {
			extra[k] = v
		}
	}
	if len(extra) == 0 {
		return meta, nil
	}
	for k := range extra {
		if !slices.Contains(in.st.MetaFields, k) {
			in.st.MetaFields = append(in.st.MetaFields, k)
			slices.Sort(in.st.MetaFields)
		}
	}
	merged := map[string]json.RawMessage{}
	if m := bytes.TrimSpace(meta); len(m) > 0 && !bytes.Equal(m, []byte("null")) {
		if m[0] == '{' {
			if err := json.Unmarshal(m, &merged); err != nil {
				return nil, fmt.Errorf("meta: %w", err)
			}
		} else {
			merged["meta"] = m
		}
	}
	for k, v := range extra {
		if _, ok := merged[k]; !ok {
			merged[k] = v
		}
	}
	return json.Marshal(merged) // sorted keys: the same bytes every run
}

func (in *ingester) llava(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("input %s: %w", file, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('[') {
		return in.bad(&InputError{File: file, Line: 1, Err: errors.New("LLaVA JSON must be an array of conversations")})
	}
	root := in.root(file)
	for i := 0; dec.More(); i++ {
		start := dec.InputOffset()
		at := start
		for at < int64(len(data)) && strings.IndexByte(" \t\r\n,", data[at]) >= 0 {
			at++
		}
		line := 1 + bytes.Count(data[:at], []byte("\n"))
		var rec struct {
			ID            json.RawMessage `json:"id"`
			Image         json.RawMessage `json:"image"`
			Conversations []struct {
				From  string `json:"from"`
				Value string `json:"value"`
			} `json:"conversations"`
		}
		if err := dec.Decode(&rec); err != nil {
			return in.bad(&InputError{File: file, Line: line, Err: fmt.Errorf("record %d: malformed JSON: %w", i, err)})
		}
		in.progress(dec.InputOffset() - start)
		if err := in.ctx.Err(); err != nil {
			return err
		}
		id := strings.Trim(string(rec.ID), `"`)
		if id == "" {
			id = fmt.Sprintf("%s#%d", filepath.Base(file), i)
		}
		var imgs []string
		if len(rec.Image) > 0 && string(rec.Image) != "null" {
			var one string
			if json.Unmarshal(rec.Image, &one) == nil {
				imgs = []string{one}
			} else if err := json.Unmarshal(rec.Image, &imgs); err != nil {
				if err := in.bad(&InputError{File: file, Line: line, What: id, Err: errors.New(`"image" is neither a string nor a list of strings`)}); err != nil {
					return err
				}
				continue
			}
		}
		s := Sample{ID: id}
		var bad error
		for _, p := range imgs {
			im, err := loadImage(filepath.Join(root, filepath.FromSlash(p)))
			if err != nil {
				bad = &InputError{File: file, Line: line, What: p, Err: err}
				break
			}
			s.Images = append(s.Images, *im)
		}
		for _, c := range rec.Conversations {
			role := c.From
			switch c.From {
			case "human", "user":
				role = "user"
			case "gpt", "assistant":
				role = "assistant"
			case "system":
			default:
				bad = &InputError{File: file, Line: line, What: id, Err: fmt.Errorf("unknown speaker %q (want human, gpt or system)", c.From)}
			}
			s.Turns = append(s.Turns, Turn{Role: role, Text: c.Value, Loss: role == "assistant"})
		}
		if bad != nil {
			if err := in.bad(bad.(*InputError)); err != nil {
				return err
			}
			continue
		}
		if err := in.add(s, file, line, id); err != nil {
			return err
		}
	}
	return nil
}

func (in *ingester) wds(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("input %s: %w", file, err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	type group struct {
		key   string
		image []byte
		iname string
		text  *string
		meta  string
	}
	var cur *group
	flush := func() error {
		if cur == nil {
			return nil
		}
		g := cur
		cur = nil
		if g.image == nil {
			return in.bad(&InputError{File: file, What: g.key, Err: errors.New("no .jpg/.jpeg/.png member")})
		}
		im, err := imageFromBytes(g.image)
		if err != nil {
			return in.bad(&InputError{File: file, What: g.iname, Err: err})
		}
		caption := ""
		if g.text != nil {
			caption = *g.text
		}
		return in.add(Sample{ID: g.key, Image: im, Caption: caption, Meta: g.meta}, file, 0, g.key)
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return in.bad(&InputError{File: file, Err: fmt.Errorf("tar: %w", err)})
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if err := in.ctx.Err(); err != nil {
			return err
		}
		base := path.Base(hdr.Name)
		dot := strings.IndexByte(base, '.')
		if dot <= 0 {
			continue
		}
		key := path.Join(path.Dir(hdr.Name), base[:dot])
		ext := strings.ToLower(base[dot+1:])
		if cur == nil || cur.key != key {
			if err := flush(); err != nil {
				return err
			}
			cur = &group{key: key}
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return in.bad(&InputError{File: file, What: hdr.Name, Err: err})
		}
		in.progress(hdr.Size + 512)
		switch ext {
		case "jpg", "jpeg", "png":
			cur.image, cur.iname = data, hdr.Name
		case "txt", "caption", "cap":
			s := strings.TrimSpace(string(data))
			cur.text = &s
		case "json":
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				if err := in.bad(&InputError{File: file, What: hdr.Name, Err: fmt.Errorf("malformed JSON: %w", err)}); err != nil {
					return err
				}
				continue
			}
			cur.meta = string(data)
			if cur.text == nil {
				for _, k := range []string{"caption", "text", "txt"} {
					if s, ok := m[k].(string); ok {
						cur.text = &s
						break
					}
				}
			}
		}
	}
	return flush()
}

func (in *ingester) text(file string) error {
	n := 0
	return in.lines(file, func(line []byte, ln int) error {
		n++
		id := fmt.Sprintf("%s:%d", filepath.Base(file), ln)
		return in.add(Sample{ID: id, Text: string(line)}, file, ln, "")
	})
}

func (in *ingester) jsonl(file string, kind Kind) error {
	return in.lines(file, func(line []byte, n int) error {
		var rec struct {
			ID     json.RawMessage `json:"id"`
			Text   *string         `json:"text"`
			Tokens []int32         `json:"tokens"`
			Meta   json.RawMessage `json:"meta"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			return in.bad(&InputError{File: file, Line: n, Err: fmt.Errorf("malformed JSON: %w", err)})
		}
		meta, err := in.keepFields(line, rec.Meta, "id", "text", "tokens", "meta")
		if err != nil {
			return in.bad(&InputError{File: file, Line: n, Err: err})
		}
		rec.Meta = meta
		id := strings.Trim(string(rec.ID), `"`)
		if id == "" {
			id = fmt.Sprintf("%s:%d", filepath.Base(file), n)
		}
		s := Sample{ID: id, Meta: string(rec.Meta), Tokens: rec.Tokens}
		switch {
		case kind == KindTokens && rec.Tokens == nil:
			return in.bad(&InputError{File: file, Line: n, Err: errors.New(`no "tokens" field`)})
		case kind == KindText && rec.Text == nil:
			return in.bad(&InputError{File: file, Line: n, Err: errors.New(`no "text" field`)})
		}
		if rec.Text != nil {
			s.Text = *rec.Text
		}
		return in.add(s, file, n, "")
	})
}
