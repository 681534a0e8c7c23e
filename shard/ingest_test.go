package shard_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

// imageFolder writes n PNG images, one JPEG and a captions.jsonl into a
// temporary directory; extra lines are appended to the JSONL.
func imageFolder(t *testing.T, n int, extra ...string) string {
	dir := t.TempDir()
	var jl strings.Builder
	for i := 0; i < n; i++ {
		s := synth.Sample(shard.KindImageText, 3, i)
		name := fmt.Sprintf("img/%03d.png", i)
		os.MkdirAll(filepath.Join(dir, "img"), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), s.Image.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&jl, `{"image": %q, "caption": %q}`+"\n", name, s.Caption)
	}
	var jb bytes.Buffer
	jpeg.Encode(&jb, image.NewRGBA(image.Rect(0, 0, 40, 30)), nil)
	os.WriteFile(filepath.Join(dir, "img/black.jpg"), jb.Bytes(), 0o644)
	jl.WriteString(`{"image": "img/black.jpg", "caption": "a black rectangle"}` + "\n")
	for _, e := range extra {
		jl.WriteString(e + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "captions.jsonl"), []byte(jl.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestIngestImageFolder(t *testing.T) {
	ctx := context.Background()
	dir := imageFolder(t, 30)
	store := shard.NewMemStore()
	var calls int
	st, err := shard.Ingest(ctx, dir, store, "coco", shard.IngestOptions{
		Writer:   shard.WriterOptions{BatchBytes: 4 << 10},
		Progress: func(done, total, rows int64) { calls++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Format != shard.FormatImages || st.Kind != shard.KindImageText || st.Rows != 31 || st.Skipped != 0 {
		t.Fatalf("Ingest = %+v; want images format, 31 image-text rows", st)
	}
	if calls != 31 {
		t.Errorf("progress called %d times, want once per line (31)", calls)
	}
	r, _ := shard.OpenReader(ctx, store, "coco", shard.ReaderOptions{})
	s, err := r.Get(ctx, 0, 30)
	if err != nil || s.Image.Format != "jpeg" || s.Image.Width != 40 || s.Image.Height != 30 || s.Caption != "a black rectangle" {
		t.Fatalf("row 30 = %+v, %v; want the 40x30 jpeg", s.Image, err)
	}
	rep, err := shard.Verify(ctx, store, "coco", shard.VerifyOptions{DecodeImages: true})
	if err != nil || !rep.OK() || rep.Rows != 31 {
		t.Fatalf("Verify = %+v, %v; want OK with 31 rows", rep, err)
	}
}

func TestIngestBadInput(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		line string
		want string
	}{
		{`{"image": "img/missing.png", "caption": "x"}`, "captions.jsonl:7 (img/missing.png)"},
		{`{"image": "img/000.png", "caption": `, "captions.jsonl:7: malformed JSON"},
		{`{"caption": "no image"}`, `captions.jsonl:7: no "image" field`},
		{`{"image": "captions.jsonl"}`, "captions.jsonl:7 (captions.jsonl): undecodable image"},
	}
	for _, c := range cases {
		dir := imageFolder(t, 5, c.line, `{"image": "img/001.png", "caption": "fine"}`)
		_, err := shard.Ingest(ctx, dir, shard.NewMemStore(), "ds", shard.IngestOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Ingest with line %s = %v; want an error containing %q", c.line, err, c.want)
		}
		store := shard.NewMemStore()
		st, err := shard.Ingest(ctx, dir, store, "ds", shard.IngestOptions{SkipBad: true})
		if err != nil || st.Skipped != 1 || st.Rows != 7 || !strings.Contains(st.SkipErrors[0].Error(), c.want) {
			t.Errorf("Ingest --on-error=skip with line %s = %+v, %v; want 1 skip (%q) and 7 rows", c.line, st, err, c.want)
		}
	}
}

func TestIngestLLaVA(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := synth.Sample(shard.KindImageText, 1, 0)
	os.WriteFile(filepath.Join(dir, "cat.png"), s.Image.Data, 0o644)
	doc := `[
  {"id": "000001", "image": "cat.png", "conversations": [
    {"from": "human", "value": "<image>\nWhat is this?"},
    {"from": "gpt", "value": "` + s.Caption + `"},
    {"from": "human", "value": "Sure?"},
    {"from": "gpt", "value": "Yes."}]},
  {"id": "000002", "conversations": [
    {"from": "human", "value": "Hello"},
    {"from": "gpt", "value": "Hi."}]},
  {"id": "000003", "image": "dog.png", "conversations": [{"from": "human", "value": "<image>"}]}
]`
	os.WriteFile(filepath.Join(dir, "llava.json"), []byte(doc), 0o644)
	_, err := shard.Ingest(ctx, dir, shard.NewMemStore(), "ds", shard.IngestOptions{})
	if err == nil || !strings.Contains(err.Error(), "llava.json:10 (dog.png)") {
		t.Fatalf("Ingest(LLaVA with a missing image) = %v; want an error naming llava.json:10 and dog.png", err)
	}
	store := shard.NewMemStore()
	st, err := shard.Ingest(ctx, dir, store, "ds", shard.IngestOptions{SkipBad: true})
	if err != nil || st.Kind != shard.KindConversation || st.Rows != 2 || st.Skipped != 1 {
		t.Fatalf("Ingest(LLaVA) = %+v, %v; want 2 conversations and 1 skip", st, err)
	}
	r, _ := shard.OpenReader(ctx, store, "ds", shard.ReaderOptions{})
	got, err := r.Get(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Images) != 1 || len(got.Turns) != 4 || got.Turns[0].Role != "user" || got.Turns[0].Loss || !got.Turns[1].Loss || got.Turns[1].Text != s.Caption {
		t.Fatalf("conversation = %+v", got)
	}
}

func TestIngestWebDataset(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	for i := 0; i < 12; i++ {
		s := synth.Sample(shard.KindImageText, 4, i)
		key := fmt.Sprintf("part/%05d", i)
		add(key+".png", s.Image.Data)
		if i%2 == 0 {
			add(key+".txt", []byte(s.Caption))
		} else {
			add(key+".json", []byte(fmt.Sprintf(`{"caption": %q, "width": %d}`, s.Caption, s.Image.Width)))
		}
	}
	add("part/bad.png", []byte("garbage"))
	tw.Close()
	os.WriteFile(filepath.Join(dir, "shard-0000.tar"), buf.Bytes(), 0o644)
	_, err := shard.Ingest(ctx, dir, shard.NewMemStore(), "ds", shard.IngestOptions{})
	if err == nil || !strings.Contains(err.Error(), "shard-0000.tar (part/bad.png)") {
		t.Fatalf("Ingest(tar with a bad image) = %v; want an error naming the tar and member", err)
	}
	store := shard.NewMemStore()
	st, err := shard.Ingest(ctx, dir, store, "ds", shard.IngestOptions{SkipBad: true})
	if err != nil || st.Format != shard.FormatWDS || st.Rows != 12 || st.Skipped != 1 {
		t.Fatalf("Ingest(wds) = %+v, %v; want 12 rows, 1 skip", st, err)
	}
	r, _ := shard.OpenReader(ctx, store, "ds", shard.ReaderOptions{})
	for i := int64(0); i < 12; i++ {
		got, err := r.Get(ctx, 0, i)
		want := synth.Sample(shard.KindImageText, 4, int(i))
		if err != nil || got.Caption != want.Caption || !bytes.Equal(got.Image.Data, want.Image.Data) {
			t.Fatalf("row %d = %q, %v; want %q", i, got.Caption, err, want.Caption)
		}
	}
}

func TestIngestTextAndTokens(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("first doc\n\nsecond doc\n"), 0o644)
	store := shard.NewMemStore()
	st, err := shard.Ingest(ctx, filepath.Join(dir, "a.txt"), store, "t", shard.IngestOptions{})
	if err != nil || st.Kind != shard.KindText || st.Rows != 2 {
		t.Fatalf("Ingest(txt) = %+v, %v", st, err)
	}
	os.WriteFile(filepath.Join(dir, "tok.jsonl"), []byte(`{"tokens": [1,2,3]}`+"\n"+`{"tokens": "oops"}`+"\n"+`{"tokens": [4]}`+"\n"), 0o644)
	_, err = shard.Ingest(ctx, filepath.Join(dir, "tok.jsonl"), store, "k", shard.IngestOptions{})
	if err == nil || !strings.Contains(err.Error(), "tok.jsonl:2") {
		t.Fatalf("Ingest(tokens with a bad line) = %v; want tok.jsonl:2", err)
	}
	st, err = shard.Ingest(ctx, filepath.Join(dir, "tok.jsonl"), store, "k", shard.IngestOptions{SkipBad: true})
	if err != nil || st.Kind != shard.KindTokens || st.Rows != 2 || st.Skipped != 1 {
		t.Fatalf("Ingest(tokens) = %+v, %v", st, err)
	}
}

func TestVerifyFindsFaults(t *testing.T) {
	ctx := context.Background()
	store := shard.NewMemStore()
	ix := writeSynth(t, store, "ds", shard.KindImageText, 80, shard.WriterOptions{BatchBytes: 2 << 10, ShardBytes: 6 << 10})
	rep, err := shard.Verify(ctx, store, "ds", shard.VerifyOptions{})
	if err != nil || !rep.OK() || rep.Rows != 80 || rep.Shards != len(ix.Shards) {
		t.Fatalf("Verify(healthy) = %+v, %v", rep, err)
	}
	b := ix.Shards[1].Batches[0]
	store.Corrupt("ds/shard-00001.arrow", b.Offset+b.Length-3, 0xff)
	store.Truncate("ds/shard-00002.arrow", ix.Shards[2].Size-5)
	store.Corrupt("ds/shard-00000.arrow", 20, 0x01) // inside the schema message after the magic
	store.Put(ctx, "ds/stray.bin", strings.NewReader("x"), 1)
	rep, _ = shard.Verify(ctx, store, "ds", shard.VerifyOptions{})
	all := strings.Join(rep.Faults, "\n")
	if rep.OK() || !strings.Contains(all, "ds/shard-00001.arrow batch 0") || !strings.Contains(all, "ds/shard-00002.arrow") ||
		!strings.Contains(all, "ds/shard-00000.arrow: its schema message differs from the index's schema field") {
		t.Fatalf("Verify(corrupted) faults:\n%s\nwant faults naming shard-00001 batch 0, shard-00002 and shard-00000's schema message", all)
	}
	if len(rep.Unindexed) != 1 || rep.Unindexed[0] != "ds/stray.bin" {
		t.Errorf("Unindexed = %v, want [ds/stray.bin]", rep.Unindexed)
	}
	rep, _ = shard.Verify(ctx, store, "nothing-here", shard.VerifyOptions{})
	if rep.OK() {
		t.Error("Verify(no dataset) is OK, want a fault")
	}
}

func TestProgressBar(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := shard.NewProgress(100<<20, t0)
	p.Update(25<<20, 1000, t0.Add(10*time.Second))
	bar := p.Bar(90)
	for _, want := range []string{"25.0%", "25.0 MiB/100.0 MiB", "2.5 MiB/s", "100 rows/s", "ETA 30s"} {
		if !strings.Contains(bar, want) {
			t.Errorf("Bar() = %q, want it to contain %q", bar, want)
		}
	}
	if eta := shard.NewProgress(0, t0).ETA(); eta != -1 {
		t.Errorf("ETA with unknown total = %v, want -1", eta)
	}
}

// TestIngestKeepsUnknownFields: JSONL fields that are none of the
// format's own go into the row's meta object instead of being dropped,
// and the stats name them (issue 15: a "label" field vanished).
func TestIngestKeepsUnknownFields(t *testing.T) {
	ctx := context.Background()
	dir := imageFolder(t, 2,
		`{"image": "img/000.png", "caption": "c", "label": 3, "source": "web"}`,
		`{"image": "img/001.png", "caption": "d", "label": 5, "meta": {"source": "kept", "w": 1}}`,
		`{"image": "img/001.png", "caption": "e", "label": 7, "meta": "free text"}`)
	store := shard.NewMemStore()
	st, err := shard.Ingest(ctx, dir, store, "ds", shard.IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.MetaFields, ",") != "label,source" {
		t.Errorf("MetaFields = %v, want [label source]", st.MetaFields)
	}
	r, err := shard.OpenReader(ctx, store, "ds", shard.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for row, want := range map[int64]string{
		0: "",
		3: `{"label":3,"source":"web"}`,
		4: `{"label":5,"source":"kept","w":1}`, // meta's own value wins
		5: `{"label":7,"meta":"free text"}`,
	} {
		s, err := r.Get(ctx, 0, row)
		if err != nil {
			t.Fatal(err)
		}
		if s.Meta != want {
			t.Errorf("row %d meta = %q, want %q", row, s.Meta, want)
		}
	}
	tdir := t.TempDir()
	os.WriteFile(filepath.Join(tdir, "docs.jsonl"), []byte(`{"text": "a doc", "lang": "en"}`+"\n"), 0o644)
	st, err = shard.Ingest(ctx, filepath.Join(tdir, "docs.jsonl"), store, "txt", shard.IngestOptions{})
	if err != nil || strings.Join(st.MetaFields, ",") != "lang" {
		t.Fatalf("Ingest(text JSONL with lang) = %+v, %v; want lang kept in meta", st, err)
	}
	r, _ = shard.OpenReader(ctx, store, "txt", shard.ReaderOptions{})
	if s, err := r.Get(ctx, 0, 0); err != nil || s.Meta != `{"lang":"en"}` {
		t.Errorf("text row meta = %q, %v; want {\"lang\":\"en\"}", s.Meta, err)
	}
}
