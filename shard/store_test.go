package shard_test

import (
	"testing"

	"github.com/loomtrain/loom/internal/s3server"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/storetest"
)

func TestConformanceFS(t *testing.T) {
	s, err := shard.NewFSStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, s, storetest.Options{LargeObject: 4 << 20})
}

func TestConformanceMem(t *testing.T) {
	storetest.Run(t, shard.NewMemStore(), storetest.Options{LargeObject: 1 << 20})
}

// embeddedS3 starts the in-process gofakes3 server and returns a store on a
// fresh bucket.
func embeddedS3(t testing.TB, dir string) *shard.S3Store {
	t.Helper()
	srv, err := s3server.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.CreateBucket("loom"); err != nil {
		t.Fatal(err)
	}
	s, err := shard.NewS3Store(shard.S3Config{Endpoint: srv.Endpoint, Bucket: "loom", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformanceEmbeddedS3Dir(t *testing.T) {
	large := int64(20 << 20)
	if testing.Short() {
		large = 0
	}
	storetest.Run(t, embeddedS3(t, t.TempDir()), storetest.Options{LargeObject: large})
}

func TestConformanceEmbeddedS3Mem(t *testing.T) {
	storetest.Run(t, embeddedS3(t, ""), storetest.Options{})
}

// versity starts versitygw as a separate process, or skips.
func versity(t testing.TB) *shard.S3Store {
	t.Helper()
	v, err := s3server.StartVersity(t.TempDir())
	if err != nil {
		if err == s3server.ErrNoVersity {
			t.Skipf("skipping versitygw tests: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	if err := v.CreateBucket("loom"); err != nil {
		t.Fatal(err)
	}
	s, err := shard.NewS3Store(shard.S3Config{Endpoint: v.Endpoint, Bucket: "loom", AccessKey: v.AccessKey, SecretKey: v.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformanceVersity(t *testing.T) {
	large := int64(24 << 20)
	if testing.Short() {
		large = 0
	}
	storetest.Run(t, versity(t), storetest.Options{LargeObject: large})
}
