package shard

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"testing"
)

func TestLRUDemoteEvictsFirst(t *testing.T) {
	c := newLRU[string, int](3)
	for i, k := range []string{"a", "b", "c"} {
		c.add(k, i, 1)
	}
	c.get("a") // order, most recent first: a c b
	c.demote("c")
	c.demote("missing") // no effect
	c.add("d", 3, 1)    // evicts c, the demoted one, not b
	for _, k := range []string{"a", "b", "d"} {
		if _, ok := c.get(k); !ok {
			t.Errorf("after demote(c) and add(d): get(%s) missing, want kept", k)
		}
	}
	if _, ok := c.get("c"); ok {
		t.Errorf("after demote(c) and add(d): get(c) present, want evicted first")
	}
}

func TestWindowCountsDistinctBatches(t *testing.T) {
	w := window{refs: map[batchKey]int{}}
	a, b := batchKey{0, 1}, batchKey{2, 0}
	steps := []struct {
		op        string
		k         batchKey
		n         int64
		wantBytes int64
		wantLast  bool
	}{
		{"add", a, 100, 100, false},
		{"add", a, 100, 100, false},
		{"add", b, 40, 140, false},
		{"done", a, 100, 140, false},
		{"done", b, 40, 100, true},
		{"done", b, 40, 100, false}, // not in the window: no effect
		{"done", a, 100, 0, true},
	}
	for i, s := range steps {
		last := false
		if s.op == "add" {
			w.add(s.k, s.n)
		} else {
			last = w.done(s.k, s.n)
		}
		if w.bytes != s.wantBytes || last != s.wantLast {
			t.Fatalf("step %d: %s(%v, %d): bytes %d, last %v; want %d, %v", i, s.op, s.k, s.n, w.bytes, last, s.wantBytes, s.wantLast)
		}
	}
	if len(w.refs) != 0 {
		t.Errorf("window empty in bytes but holds refs %v", w.refs)
	}
}

// TestPeekReaderMatchesBufio checks the reader image header checks go
// through against bufio.Reader, the reference image.DecodeConfig uses
// otherwise: same format, size and error for PNG, JPEG and garbage.
func TestPeekReaderMatchesBufio(t *testing.T) {
	im := image.NewRGBA(image.Rect(0, 0, 7, 5))
	im.Set(1, 1, color.RGBA{200, 10, 10, 255})
	var p, j bytes.Buffer
	if err := png.Encode(&p, im); err != nil {
		t.Fatal(err)
	}
	if err := jpeg.Encode(&j, im, nil); err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]byte{"png": p.Bytes(), "jpeg": j.Bytes(), "empty": nil, "garbage": []byte("not an image"),
		"cut png": p.Bytes()[:20], "cut jpeg": j.Bytes()[:30]}
	for name, data := range inputs {
		gotCfg, gotFmt, gotErr := image.DecodeConfig(&peekReader{b: data})
		wantCfg, wantFmt, wantErr := image.DecodeConfig(bytes.NewReader(data))
		if gotCfg.Width != wantCfg.Width || gotCfg.Height != wantCfg.Height || gotFmt != wantFmt || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Errorf("%s: DecodeConfig(peekReader) = %dx%d %q %v; through bufio %dx%d %q %v", name,
				gotCfg.Width, gotCfg.Height, gotFmt, gotErr, wantCfg.Width, wantCfg.Height, wantFmt, wantErr)
		}
	}
	r := &peekReader{b: []byte("abc")}
	if b, err := r.Peek(5); string(b) != "abc" || err != io.EOF {
		t.Errorf("Peek(5) of 3 bytes = %q, %v; want \"abc\", io.EOF", b, err)
	}
	buf := make([]byte, 2)
	if n, err := r.Read(buf); n != 2 || err != nil || string(buf) != "ab" {
		t.Errorf("Read = %d %q %v; want 2 \"ab\" nil", n, buf[:n], err)
	}
	if b, err := r.Peek(1); string(b) != "c" || err != nil {
		t.Errorf("Peek(1) after Read = %q, %v; want \"c\", nil", b, err)
	}
}

func FuzzParseSchemaMessage(f *testing.F) {
	for _, k := range Kinds {
		b, err := schemaMessage(k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseSchemaMessage(data)
		if err == nil && s == nil {
			t.Fatal("parseSchemaMessage returned neither a schema nor an error")
		}
	})
}

// TestSchemaMessageOfEveryKind checks that the schema message the writer
// records in the index decodes to the kind's schema, and that one whose
// metadata names another kind or version is refused.
func TestSchemaMessageOfEveryKind(t *testing.T) {
	for _, k := range Kinds {
		b, err := schemaMessage(k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseSchemaMessage(b)
		want, _ := Schema(k)
		if err != nil || !got.Equal(want) || !got.Metadata().Equal(want.Metadata()) {
			t.Errorf("parseSchemaMessage(schemaMessage(%s)) = %v, %v; want %v", k, got, err, want)
		}
		if err := checkSchemaMessage(b, k, SchemaVersion); err != nil {
			t.Errorf("checkSchemaMessage(%s) = %v", k, err)
		}
		if err := checkSchemaMessage(b, k, SchemaVersion+1); err == nil {
			t.Errorf("checkSchemaMessage(%s, version %d) accepted a schema of version %d", k, SchemaVersion+1, SchemaVersion)
		}
		other := KindText
		if k == KindText {
			other = KindTokens
		}
		if err := checkSchemaMessage(b, other, SchemaVersion); err == nil {
			t.Errorf("checkSchemaMessage(schema of %s, kind %s) accepted it", k, other)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), c.xs...)
		if got := median(c.xs); got != c.want || fmt.Sprint(in) != fmt.Sprint(c.xs) {
			t.Errorf("median(%v) = %v (input now %v), want %v (input unchanged)", in, got, c.xs, c.want)
		}
	}
}
