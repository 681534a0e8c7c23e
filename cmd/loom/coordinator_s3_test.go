package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/loomtrain/loom/internal/s3server"
	"github.com/loomtrain/loom/shard"
)

// TestS3Deleter deletes checkpoint objects named s3://bucket/key from an
// embedded S3 server; deleting again (or a missing object) is no error.
func TestS3Deleter(t *testing.T) {
	srv, err := s3server.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.CreateBucket("ckpt"); err != nil {
		t.Fatal(err)
	}
	cfg := shard.S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	st, err := shard.NewS3Store(func() shard.S3Config { c := cfg; c.Bucket = "ckpt"; return c }())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	body := []byte("weights")
	for _, k := range []string{"job/100/model.safetensors", "job/200/model.safetensors"} {
		if err := st.Put(ctx, k, bytes.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	d := &s3Deleter{cfg: cfg}
	if err := d.Delete(ctx, "s3://ckpt/job/100/model.safetensors"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := d.Delete(ctx, "s3://ckpt/job/100/model.safetensors"); err != nil {
		t.Errorf("Delete of a deleted object: %v, want nil", err)
	}
	if _, err := st.Stat(ctx, "job/100/model.safetensors"); !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("Stat of the deleted object = %v, want ErrNotFound", err)
	}
	if _, err := st.Stat(ctx, "job/200/model.safetensors"); err != nil {
		t.Errorf("the other object is gone: %v", err)
	}
	for _, bad := range []string{"ckpt/job/1", "s3://ckpt", "s3://ckpt/"} {
		if err := d.Delete(ctx, bad); err == nil || !strings.Contains(err.Error(), "want s3://bucket/key") {
			t.Errorf("Delete(%q) = %v, want an error naming the expected form", bad, err)
		}
	}
}
