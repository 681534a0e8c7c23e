package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/coordinator/registry"
	"github.com/loomtrain/loom/internal/etcdserver/etcdservertest"
)

// TestCoordinatorWithEtcd runs a coordinator against an embedded etcd: a
// worker that registers is scheduled (its assignment streams to it), and
// when its registration ends the job loses it and waits for workers again.
func TestCoordinatorWithEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and a coordinator")
	}
	etcd := etcdservertest.Start(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	var runErr error
	go func() {
		defer wg.Done()
		runErr = runCoordinator(ctx, coordinatorFlags{id: "c0", dataDir: filepath.Join(dir, "c0"), raftAddr: "127.0.0.1:0",
			grpcAddr: "127.0.0.1:0", tick: 50 * time.Millisecond, etcd: strings.Join(etcd.Endpoints, ","), etcdPrefix: "/loom/workers"},
			func(api, _ string) { ready <- api })
	}()
	defer func() {
		cancel()
		wg.Wait()
		if runErr != nil {
			t.Errorf("runCoordinator: %v", runErr)
		}
	}()
	var api string
	select {
	case api = <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("coordinator did not start")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cc, err := (&clientFlags{addr: api}).dial()
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	jobs, workers := loompb.NewJobsClient(cc), loompb.NewWorkersClient(cc)
	if _, err := jobs.SubmitJob(tctx, &loompb.SubmitJobRequest{RequestId: coordinator.NewID(), ManifestYaml: []byte(`name: etcd-job
recipe: lwm
model: {size: tiny}
datasets: [{name: books, uri: "s3://data/books"}]
global_batch: 4
stages: [{name: s, steps: 10}]
`)}); err != nil {
		t.Fatal(err)
	}
	stream, err := workers.WatchAssignment(tctx, &loompb.WatchAssignmentRequest{WorkerId: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := stream.Recv(); err != nil || !a.Idle {
		t.Fatalf("first assignment = %v, %v; want idle", a, err)
	}
	reg, err := registry.Register(tctx, cli, "/loom/workers", registry.Worker{ID: "w1", Addr: "127.0.0.1:9999", Host: "h1", GPUs: 1}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a, err := stream.Recv()
	if err != nil || a.Idle || a.Job != "etcd-job" || a.World != 1 || a.Peers[0].Addr != "127.0.0.1:9999" {
		t.Fatalf("assignment after registering = %v, %v; want etcd-job rank 0 of 1 at 127.0.0.1:9999", a, err)
	}
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	if a, err := stream.Recv(); err != nil || !a.Idle {
		t.Fatalf("assignment after the registration ended = %v, %v; want idle", a, err)
	}
	j, err := jobs.GetJob(tctx, &loompb.GetJobRequest{Job: "etcd-job"})
	if err != nil || j.State != "pending" || j.Restarts != 1 || !strings.Contains(j.Message, "lost w1") {
		t.Errorf("job after losing its worker = %v, %v; want pending, 1 restart, lost w1", j, err)
	}
}
