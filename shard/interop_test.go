package shard_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

// TestArrowJSReadsLoomShards checks that another Arrow implementation, the
// npm package apache-arrow under node, reads shards written by Loom: the
// schema metadata, the batch count and every value of every row.
func TestArrowJSReadsLoomShards(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("skipping: node is not installed (Debian: apt-get install nodejs npm)")
	}
	dir, _ := filepath.Abs("testdata/interop")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "apache-arrow")); err != nil {
		t.Skip("skipping: apache-arrow is not installed; run: (cd shard/testdata/interop && npm ci --no-audit --no-fund)")
	}
	ctx := context.Background()
	for _, kind := range shard.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			root := t.TempDir()
			store, _ := shard.NewFSStore(root)
			const n = 16
			var samples []shard.Sample
			w, err := shard.NewWriter(ctx, store, "ds", shard.WriterOptions{Kind: kind, BatchBytes: 2 << 10})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				samples = append(samples, synth.Sample(kind, 11, i))
				if err := w.Add(samples[i]); err != nil {
					t.Fatal(err)
				}
			}
			ix, err := w.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(ix.Shards) != 1 {
				t.Fatalf("want a single shard, got %d", len(ix.Shards))
			}
			out, err := exec.Command(node, filepath.Join(dir, "read.mjs"), filepath.Join(root, "ds", ix.Shards[0].Key)).CombinedOutput()
			if err != nil {
				t.Fatalf("node read.mjs: %v\n%s", err, out)
			}
			var got struct {
				Meta       map[string]string `json:"meta"`
				Batches    int               `json:"batches"`
				NumBatches int               `json:"numBatches"`
				Rows       []any             `json:"rows"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("node output: %v\n%s", err, out)
			}
			if got.Meta["loom.kind"] != string(kind) || got.Meta["loom.schema_version"] != "1" {
				t.Errorf("apache-arrow sees schema metadata %v", got.Meta)
			}
			if got.Batches != len(ix.Shards[0].Batches) || got.NumBatches != got.Batches {
				t.Errorf("apache-arrow read %d batches (footer lists %d), the index %d", got.Batches, got.NumBatches, len(ix.Shards[0].Batches))
			}
			if len(got.Rows) != n {
				t.Fatalf("apache-arrow read %d rows, want %d", len(got.Rows), n)
			}
			for i := 0; i < n; i++ {
				want := roundTrip(t, expectedJSRow(kind, samples[i]))
				if !reflect.DeepEqual(got.Rows[i], want) {
					gj, _ := json.Marshal(got.Rows[i])
					wj, _ := json.Marshal(want)
					t.Fatalf("row %d:\napache-arrow: %s\nwant:         %s", i, gj, wj)
				}
			}
		})
	}
}

func roundTrip(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	json.Unmarshal(b, &out)
	return out
}

// expectedJSRow is what read.mjs prints for a sample: the Arrow fields by
// name, binary values as {sha256, len}.
func expectedJSRow(kind shard.Kind, s shard.Sample) map[string]any {
	img := func(im *shard.Image) any {
		if im == nil {
			return nil
		}
		h := sha256.Sum256(im.Data)
		return map[string]any{"format": im.Format, "width": im.Width, "height": im.Height,
			"data": map[string]any{"sha256": hex.EncodeToString(h[:]), "len": len(im.Data)}}
	}
	imgs := func(list []shard.Image) []any {
		out := []any{}
		for i := range list {
			out = append(out, img(&list[i]))
		}
		return out
	}
	row := map[string]any{"id": s.ID, "meta": nil}
	if s.Meta != "" {
		row["meta"] = s.Meta
	}
	switch kind {
	case shard.KindImageText:
		row["image"], row["caption"] = img(s.Image), s.Caption
	case shard.KindInterleaved:
		items := []any{}
		for _, it := range s.Items {
			var text any
			if it.Image == nil {
				text = it.Text
			}
			items = append(items, map[string]any{"text": text, "image": img(it.Image)})
		}
		row["items"] = items
	case shard.KindVideoText:
		ts := []any{}
		for _, x := range s.Timestamps {
			ts = append(ts, x)
		}
		row["frames"], row["timestamps"], row["caption"] = imgs(s.Frames), ts, s.Caption
	case shard.KindText:
		row["text"] = s.Text
	case shard.KindConversation:
		turns := []any{}
		for _, tr := range s.Turns {
			turns = append(turns, map[string]any{"role": tr.Role, "text": tr.Text, "loss": tr.Loss})
		}
		row["images"], row["turns"] = imgs(s.Images), turns
	case shard.KindTokens:
		toks := []any{}
		for _, x := range s.Tokens {
			toks = append(toks, x)
		}
		row["tokens"] = toks
	}
	return row
}
