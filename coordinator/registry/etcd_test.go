package registry

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/loomtrain/loom/internal/etcdserver"
	"github.com/loomtrain/loom/internal/etcdserver/etcdservertest"
)

const prefix = "/loom/workers"

// A watcher that fell behind a compaction re-lists and reports exactly the
// difference: Down for the worker that left, Up for the one that came, and
// nothing for the one that stayed.
func TestWatchResumesAfterCompaction(t *testing.T) {
	srv := etcdservertest.Start(t)
	cli := newEtcdClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	stays, err := Register(ctx, cli, prefix, worker("stays"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stays.Close()
	leaves, err := Register(ctx, cli, prefix, worker("leaves"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The watcher's state as of now...
	w := &watcher{cli: cli, prefix: prefix + "/", log: slog.New(slog.DiscardHandler)}
	known, rev, err := w.list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.known = known
	// ...then changes it does not see, and a compaction past them.
	if err := leaves.Close(); err != nil {
		t.Fatal(err)
	}
	comes, err := Register(ctx, cli, prefix, worker("comes"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer comes.Close()
	cur, err := cli.Get(ctx, "anything")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, cur.Header.Revision); err != nil {
		t.Fatal(err)
	}

	out := make(chan Event, 16)
	_, err = w.watchFrom(ctx, rev+1, out)
	if !errors.Is(err, rpctypesErrCompacted()) {
		t.Fatalf("watchFrom(compacted revision %d) = %v, want ErrCompacted", rev+1, err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.run(wctx, rev+1, out) }()
	expect(t, out, Down, worker("leaves"))
	expect(t, out, Up, worker("comes"))
	// And it watches on from the new revision.
	later, err := Register(ctx, cli, prefix, worker("later"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	expect(t, out, Up, worker("later"))
	wcancel()
	<-done
}

// Values under the prefix that are not Workers are skipped, in the listing
// and in the stream.
func TestWatchSkipsMalformed(t *testing.T) {
	srv := etcdservertest.Start(t)
	cli := newEtcdClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, prefix+"/junk", "{not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, prefix+"/liar", `{"id":"other"}`); err != nil {
		t.Fatal(err)
	}
	ws, ch, err := Watch(ctx, cli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 0 {
		t.Fatalf("Watch listed %s, want [] (malformed entries skipped)", ids(ws))
	}
	if _, err := cli.Put(ctx, prefix+"/junk2", "]"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, prefix+"/junk"); err != nil {
		t.Fatal(err)
	}
	r, err := Register(ctx, cli, prefix, worker("a"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	expect(t, ch, Up, worker("a"))
}

// etcd goes away and comes back on the same address: the watch and the
// keepalives resume through the same clients, and nothing is lost.
func TestSurvivesEtcdRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd; -short")
	}
	dir := t.TempDir()
	opt := etcdserver.Options{NoFsync: true, Logger: slog.New(slog.DiscardHandler)}
	srv, err := etcdserver.StartWithOptions(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Close() }()
	wcli := newEtcdClient(t, srv)
	rcli := newEtcdClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	a, err := Register(ctx, rcli, prefix, worker("a"), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ws, ch, err := Watch(ctx, wcli, prefix)
	if err != nil || len(ws) != 1 {
		t.Fatalf("Watch = %s, %v; want [a]", ids(ws), err)
	}

	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	opt.ClientAddr, opt.PeerAddr = srv.ClientAddr, srv.PeerAddr
	srv, err = etcdserver.StartWithOptions(dir, opt)
	if err != nil {
		t.Fatalf("restart on %s: %v", opt.ClientAddr, err)
	}

	b, err := Register(ctx, rcli, prefix, worker("b"), 20*time.Second)
	if err != nil {
		t.Fatalf("Register(b) after restart: %v", err)
	}
	defer b.Close()
	expect(t, ch, Up, worker("b"))
	select {
	case <-a.Done():
		t.Fatalf("registration a ended across the restart: %v", a.Err())
	default:
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close(a): %v", err)
	}
	expect(t, ch, Down, worker("a"))
}

// With etcd gone for good, a registration notices within about a TTL that
// its keepalives get no answer.
func TestLeaseLostWhenEtcdUnreachable(t *testing.T) {
	srv, err := etcdserver.StartWithOptions(t.TempDir(), etcdserver.Options{NoFsync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	r, err := Register(context.Background(), cli, prefix, worker("a"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("registration still alive 15 s after etcd went away (TTL 1 s)")
	}
	if !errors.Is(r.Err(), ErrLeaseLost) {
		t.Fatalf("Err = %v, want ErrLeaseLost", r.Err())
	}
	t.Logf("Err = %v", r.Err())
}

func rpctypesErrCompacted() error { return rpctypes.ErrCompacted }
