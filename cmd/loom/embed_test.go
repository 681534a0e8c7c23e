package main

import (
	"bytes"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

// The Arrow file of loom embed reads back with the Arrow library: one row
// per sample, its id, and its embeddings as written.
func TestEmbeddingsArrow(t *testing.T) {
	samples := []shard.Sample{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	e := &trainer.Embeddings{Queries: 2, Dim: 3}
	for i := range samples {
		e.Image = append(e.Image, []float32{float32(i), 1, 2, 3, 4, 5})
		e.Text = append(e.Text, []float32{float32(-i), 7, 8})
	}
	b, err := embeddingsArrow(samples, e, map[string]string{"job": "j", "step": "9"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ipc.NewFileReader(bytes.NewReader(b), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	md := r.Schema().Metadata()
	for k, want := range map[string]string{"job": "j", "step": "9", "queries": "2", "dim": "3"} {
		if i := md.FindKey(k); i < 0 || md.Values()[i] != want {
			t.Errorf("metadata %s: %v, want %s", k, md, want)
		}
	}
	if r.NumRecords() != 1 {
		t.Fatalf("%d record batches", r.NumRecords())
	}
	rec, err := r.Record(0)
	if err != nil {
		t.Fatal(err)
	}
	ids := rec.Column(0).(*array.String)
	img := rec.Column(1).(*array.FixedSizeList)
	txt := rec.Column(2).(*array.FixedSizeList)
	iv := img.ListValues().(*array.Float32).Float32Values()
	tv := txt.ListValues().(*array.Float32).Float32Values()
	for i, s := range samples {
		if ids.Value(i) != s.ID || !slices.Equal(iv[i*6:(i+1)*6], e.Image[i]) || !slices.Equal(tv[i*3:(i+1)*3], e.Text[i]) {
			t.Errorf("row %d: id %q, image %v, text %v", i, ids.Value(i), iv[i*6:(i+1)*6], tv[i*3:(i+1)*3])
		}
	}
}
