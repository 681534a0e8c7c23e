package s3server_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/loomtrain/loom/internal/s3server"
	"github.com/loomtrain/loom/shard"
)

func store(t *testing.T, endpoint, ak, sk string) *shard.S3Store {
	s, err := shard.NewS3Store(shard.S3Config{Endpoint: endpoint, Bucket: "data", AccessKey: ak, SecretKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestObjectsPersistAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := s3server.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(srv.Endpoint, "http://127.0.0.1:") {
		t.Errorf("Endpoint = %q, want a loopback URL", srv.Endpoint)
	}
	if err := srv.CreateBucket("data"); err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateBucket("data"); err != nil {
		t.Fatalf("creating an existing bucket: %v", err)
	}
	s := store(t, srv.Endpoint, srv.AccessKey, srv.SecretKey)
	if err := s.Put(ctx, "a/b.bin", bytes.NewReader([]byte("hello")), 5); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Close", addr)
	}
	srv, err = s3server.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	got, err := store(t, srv.Endpoint, srv.AccessKey, srv.SecretKey).GetRange(ctx, "a/b.bin", 0, -1)
	if err != nil || string(got) != "hello" {
		t.Fatalf("after restart on the same dir: %q, %v; want hello", got, err)
	}
}

func TestVersityStartsAndStops(t *testing.T) {
	v, err := s3server.StartVersity(t.TempDir())
	if errors.Is(err, s3server.ErrNoVersity) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := v.CreateBucket("data"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store(t, v.Endpoint, v.AccessKey, v.SecretKey).Put(ctx, "x", bytes.NewReader([]byte("y")), 1); err != nil {
		t.Fatal(err)
	}
	// versitygw checks signatures: the wrong secret is refused at once.
	_, err = store(t, v.Endpoint, v.AccessKey, "wrong-secret").Stat(ctx, "x")
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("Stat with a wrong secret = %v, want a 403", err)
	}
	addr := strings.TrimPrefix(v.Endpoint, "http://")
	v.Close()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("versitygw still listens on %s after Close", addr)
	}
}
