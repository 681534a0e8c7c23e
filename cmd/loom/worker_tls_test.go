package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/internal/devcluster"
	"github.com/loomtrain/loom/internal/etcdserver/etcdservertest"
	"github.com/loomtrain/loom/internal/grpcauth"
	"github.com/loomtrain/loom/internal/grpcauth/authtest"
	"github.com/loomtrain/loom/internal/s3server"
)

// TestWorkerMutualTLS runs a coordinator with --tls-* and two workers
// against a real etcd: the worker started with certificates of the same
// CA connects (/readyz turns ready), the one without certificates never
// gets an assignment stream.
func TestWorkerMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd, an S3 server, a coordinator and two workers")
	}
	dir := t.TempDir()
	ca, err := authtest.NewCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	node, err := ca.Issue("coordinator", grpcauth.Node, "")
	if err != nil {
		t.Fatal(err)
	}
	wcert, err := ca.Issue("worker", grpcauth.Worker, "w-tls")
	if err != nil {
		t.Fatal(err)
	}
	etcd := etcdservertest.Start(t)
	s3, err := s3server.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	t.Setenv("LOOM_S3_ACCESS_KEY", s3.AccessKey)
	t.Setenv("LOOM_S3_SECRET_KEY", s3.SecretKey)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	defer func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("stopping: %v", err)
			}
		}
	}()
	ready := make(chan string, 1)
	wg.Go(func() {
		errs <- runCoordinator(ctx, coordinatorFlags{id: "c0", dataDir: filepath.Join(dir, "c0"), raftAddr: "127.0.0.1:0",
			grpcAddr: "127.0.0.1:0", tick: 50 * time.Millisecond, etcd: strings.Join(etcd.Endpoints, ","), etcdPrefix: "/loom/workers",
			tls: coordinator.TLSFiles{Cert: node.Cert, Key: node.Key, CA: ca.Path}},
			func(api, _ string) { ready <- api })
	})
	var api string
	select {
	case api = <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("coordinator did not start")
	}
	startWorker := func(id string, tls coordinator.TLSFiles) string {
		listen, err := devcluster.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		httpAddr, err := devcluster.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		f := workerFlags{id: id, coordinator: api, etcd: strings.Join(etcd.Endpoints, ","), etcdPrefix: "/loom/workers",
			listen: listen, advertise: listen, httpAddr: httpAddr, s3Bucket: "loom", cacheDir: filepath.Join(dir, id),
			drainTimeout: 10 * time.Second, tls: tls}
		f.s3.endpoint = s3.Endpoint
		wg.Go(func() { errs <- runWorker(ctx, f) })
		return "http://" + httpAddr + "/readyz"
	}
	readyz := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	withTLS := startWorker("w-tls", coordinator.TLSFiles{Cert: wcert.Cert, Key: wcert.Key, CA: ca.Path})
	plain := startWorker("w-plain", coordinator.TLSFiles{})
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := readyz(withTLS)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker with --tls-*: /readyz = %d %q after 30s, want 200", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The plain worker had as long as the TLS one, and one more second.
	time.Sleep(time.Second)
	if code, body := readyz(plain); code != http.StatusServiceUnavailable || !strings.Contains(body, "coordinator") {
		t.Errorf("worker without TLS against a mutual-TLS coordinator: /readyz = %d %q, want 503 naming the coordinator", code, body)
	}
}
