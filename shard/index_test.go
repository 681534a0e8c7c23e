package shard_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/loomtrain/loom/shard"
)

func validIndex(t testing.TB) []byte {
	store := shard.NewMemStore()
	writeSynth(t, store, "ds", shard.KindText, 50, shard.WriterOptions{BatchBytes: 1 << 10, ShardBytes: 4 << 10})
	data, err := store.GetRange(context.Background(), "ds/index.json", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseIndexErrorsNameTheField(t *testing.T) {
	good := string(validIndex(t))
	cases := []struct {
		name, old, new, want string
	}{
		{"version", `"version": 2`, `"version": 9`, "field version"},
		{"schema in a v1 index", `"version": 2`, `"version": 1`, "field schema"},
		{"schema not base64", `"schema": "`, `"schema": "%%`, "schema"},
		{"schema of another kind", `"kind": "text"`, `"kind": "tokens"`, "field schema"},
		{"schema version", `"schema_version": 1`, `"schema_version": 0`, "schema_version"},
		{"kind", `"kind": "text"`, `"kind": "audio"`, "field kind"},
		{"rows", `"rows": 50`, `"rows": 51`, "field rows"},
		{"unknown field", `"format"`, `"colour": 1, "format"`, "unknown field"},
		{"sha", `"sha256": "`, `"sha256": "zz`, "sha256"},
		{"offset", `"offset": 344`, `"offset": 352`, "offset"},
	}
	for _, c := range cases {
		doc := strings.Replace(good, c.old, c.new, 1)
		if doc == good {
			t.Fatalf("%s: %q not found in the index", c.name, c.old)
		}
		_, err := shard.ParseIndex([]byte(doc), "ds/index.json")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "ds/index.json") {
			t.Errorf("ParseIndex with %s changed = %v; want an error naming ds/index.json and %q", c.name, err, c.want)
		}
	}
	if _, err := shard.ParseIndex([]byte(good), "ds/index.json"); err != nil {
		t.Errorf("ParseIndex(valid) = %v", err)
	}
	noSchema := regexp.MustCompile(`\n *"schema": "[^"]*",`).ReplaceAllString(good, "")
	if noSchema == good {
		t.Fatalf("no schema field in the index:\n%s", good)
	}
	if _, err := shard.ParseIndex([]byte(noSchema), "ds/index.json"); err == nil || !strings.Contains(err.Error(), "field schema") {
		t.Errorf("ParseIndex(version 2 without schema) = %v; want an error naming field schema", err)
	}
	v1 := strings.Replace(noSchema, `"version": 2`, `"version": 1`, 1)
	if _, err := shard.ParseIndex([]byte(v1), "ds/index.json"); err != nil {
		t.Errorf("ParseIndex(version 1, no schema) = %v; version 1 indexes stay readable", err)
	}
}

func FuzzParseIndex(f *testing.F) {
	f.Add(validIndex(f))
	f.Add([]byte(`{"format":"loom-shards","version":1,"kind":"text","schema_version":1,"rows":0,"bytes":0,"shards":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := shard.ParseIndex(data, "fuzz")
		if err != nil {
			return
		}
		// Whatever parses must be internally consistent: every row is
		// addressable and the batches tile each shard up to its footer.
		var rows int64
		for _, s := range ix.Shards {
			pos := s.Batches[0].Offset
			for _, b := range s.Batches {
				if b.Offset != pos || b.Rows <= 0 {
					t.Fatalf("accepted index with bad batch %+v", b)
				}
				pos += b.Length
			}
			if pos != s.FooterOffset || pos > s.Size {
				t.Fatalf("accepted index with footer %d, batches end %d, size %d", s.FooterOffset, pos, s.Size)
			}
			rows += s.Rows
		}
		if rows != ix.Rows {
			t.Fatalf("accepted index with %d rows in shards, %d total", rows, ix.Rows)
		}
	})
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"256MiB", "4 MB", "512k", "1048576", "", "MiB", "-1", "9999999999999GiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := shard.ParseBytes(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseBytes(%q) = %d, a negative size", s, n)
		}
	})
}

func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{"s3://bucket/prefix", "s3://b", "file:///tmp/x", "/data/laion", "http://x", "s3:///p", "s3://b/../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc, err := shard.ParseLocation(s)
		if err != nil {
			return
		}
		if loc.S3 {
			if loc.Bucket == "" {
				t.Fatalf("ParseLocation(%q) accepted an empty bucket", s)
			}
			if loc.Prefix != "" && shard.ValidKey(loc.Prefix) != nil {
				t.Fatalf("ParseLocation(%q) accepted an invalid prefix %q", s, loc.Prefix)
			}
		} else if loc.Dir == "" {
			t.Fatalf("ParseLocation(%q) gave neither a bucket nor a directory", s)
		}
	})
}
