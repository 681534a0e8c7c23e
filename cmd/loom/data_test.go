package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loomtrain/loom/internal/s3server"
)

func TestDataSynthLsVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shapes")
	out, err := run(t, "data", "synth", "--kind", "image-text", "-n", "300", "--shard-size", "32KiB", "--batch-size", "8KiB", dir)
	if err != nil || !strings.Contains(out, "wrote 300 image-text rows") {
		t.Fatalf("loom data synth = %q, %v", out, err)
	}
	out, err = run(t, "data", "ls", dir)
	if err != nil || !strings.Contains(out, "image-text (schema v1), 300 rows") || !strings.Contains(out, "shard-00001.arrow") {
		t.Fatalf("loom data ls = %q, %v", out, err)
	}
	out, err = run(t, "data", "verify", dir)
	if err != nil || !strings.Contains(out, "300 rows") || !strings.Contains(out, "0 faults") {
		t.Fatalf("loom data verify (healthy) = %q, %v", out, err)
	}
	f := filepath.Join(dir, "shard-00001.arrow")
	data, _ := os.ReadFile(f)
	data[len(data)/3] ^= 0xff
	os.WriteFile(f, data, 0o644)
	out, err = run(t, "data", "verify", dir)
	if err == nil || exitCode(err) != 1 || !strings.Contains(out, "FAULT object shard-00001.arrow") {
		t.Fatalf("loom data verify (corrupt) = %q, %v (exit %d); want exit 1 and a FAULT line naming the shard", out, err, exitCode(err))
	}
}

func TestDataIngestToEmbeddedS3(t *testing.T) {
	srv, err := s3server.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "docs.txt"), []byte("one document\nanother document\n\nthird\n"), 0o644)
	t.Setenv("LOOM_S3_ENDPOINT", srv.Endpoint)
	t.Setenv("LOOM_S3_ACCESS_KEY", srv.AccessKey)
	t.Setenv("LOOM_S3_SECRET_KEY", srv.SecretKey)
	out, err := run(t, "data", "ingest", "--on-error", "fail", "--format", "auto", src, "s3://datasets/docs")
	if err != nil || !strings.Contains(out, "wrote 3 text rows") {
		t.Fatalf("loom data ingest = %q, %v", out, err)
	}
	out, err = run(t, "data", "verify", "--json", "s3://datasets/docs")
	if err != nil || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("loom data verify --json = %q, %v", out, err)
	}
	// Fields other than the format's own are kept, and named.
	os.WriteFile(filepath.Join(src, "extra.jsonl"), []byte(`{"text": "a doc", "label": 2}`+"\n"), 0o644)
	out, err = run(t, "data", "ingest", filepath.Join(src, "extra.jsonl"), "s3://datasets/extra")
	if err != nil || !strings.Contains(out, "kept fields label of the input in each row's meta") {
		t.Fatalf("loom data ingest of JSONL with a label = %q, %v; want it to say label was kept in meta", out, err)
	}
	_, err = run(t, "data", "ingest", "--on-error", "sometimes", src, "s3://datasets/x")
	if err == nil || !strings.Contains(err.Error(), "--on-error") {
		t.Fatalf("bad --on-error accepted: %v", err)
	}
}
