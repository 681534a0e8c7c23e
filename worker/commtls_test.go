package worker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/internal/testcert"
)

// commTLS loads the mutual-TLS configs of one worker from PEM files, as
// `loom worker --tls-*` does.
func commTLS(t *testing.T, leaf testcert.Leaf, ca string) *CommTLS {
	t.Helper()
	f := coordinator.TLSFiles{Cert: leaf.Cert, Key: leaf.Key, CA: ca}
	srv, err := f.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := f.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return &CommTLS{Server: srv, Client: cli}
}

// TestGRPCCommMutualTLS runs an all-reduce between two workers whose ring
// is mutually authenticated, and checks that a worker whose certificate a
// different CA signed cannot join the ring.
func TestGRPCCommMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcert.NewCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := testcert.NewCA(dir, "stranger-ca")
	if err != nil {
		t.Fatal(err)
	}
	good := make([]testcert.Leaf, 2)
	for i := range good {
		if good[i], err = ca.Issue("w" + string(rune('0'+i))); err != nil {
			t.Fatal(err)
		}
	}
	bad, err := stranger.Issue("intruder")
	if err != nil {
		t.Fatal(err)
	}

	run := func(tls [2]*CommTLS, gen int64) [2]error {
		addrs := []string{freeAddr(t), freeAddr(t)}
		var errs [2]error
		var wg sync.WaitGroup
		for r := range 2 {
			wg.Go(func() {
				a := &loompb.Assignment{Job: "tls-job", Generation: gen, Rank: int32(r),
					Peers: []*loompb.Peer{{Rank: 0, Addr: addrs[0]}, {Rank: 1, Addr: addrs[1]}}}
				comm, abort, err := GRPCCommTLS(a, addrs[r], 2*time.Second, tls[r])
				if err != nil {
					errs[r] = err
					return
				}
				defer comm.Close()
				defer abort()
				buf := []float32{float32(r + 1), 10 * float32(r+1)}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := comm.AllReduce(ctx, buf, collective.Sum); err != nil {
					errs[r] = err
					return
				}
				if buf[0] != 3 || buf[1] != 30 {
					errs[r] = fmt.Errorf("all-reduce gave %v", buf)
				}
			})
		}
		wg.Wait()
		return errs
	}

	errs := run([2]*CommTLS{commTLS(t, good[0], ca.Path), commTLS(t, good[1], ca.Path)}, 1)
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: all-reduce over mutual TLS = %v, want [3 30] on both ranks", r, err)
		}
	}
	// Rank 1 presents a certificate of another CA and does not trust ours:
	// neither side may complete the all-reduce.
	errs = run([2]*CommTLS{commTLS(t, good[0], ca.Path), commTLS(t, bad, stranger.Path)}, 2)
	for r, err := range errs {
		if err == nil {
			t.Errorf("rank %d: all-reduce with a stranger's certificate in the ring succeeded, want an error", r)
		}
	}
	if _, _, err := GRPCCommTLS(&loompb.Assignment{Peers: []*loompb.Peer{{Addr: "127.0.0.1:1"}}}, "127.0.0.1:0", time.Second,
		&CommTLS{Server: commTLS(t, good[0], ca.Path).Server}); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("GRPCCommTLS with only a server config = %v, want an error asking for both", err)
	}
}
