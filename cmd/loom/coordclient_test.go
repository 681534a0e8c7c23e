package main

import (
	"context"
	"crypto/tls"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/devcluster"
	"github.com/loomtrain/loom/internal/testcert"
)

type listOnlyJobs struct {
	loompb.UnimplementedJobsServer
}

func (listOnlyJobs) ListJobs(context.Context, *loompb.ListJobsRequest) (*loompb.ListJobsResponse, error) {
	return &loompb.ListJobsResponse{Jobs: []*loompb.Job{{Name: "from-the-live-node", State: "running"}}}, nil
}

// TestCoordinatorList: --coordinator and LOOM_COORDINATOR are a
// comma-separated list for every command, as for workers, and a node
// that does not answer is passed over (issue 15: a list failed with "too
// many colons in address", and there was no fail-over).
func TestCoordinatorList(t *testing.T) {
	t.Cleanup(func() { // flags keep their values between run calls
		c, _, _ := rootCmd.Find([]string{"status"})
		c.Flags().VisitAll(func(f *pflag.Flag) { f.Value.Set(f.DefValue); f.Changed = false })
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	loompb.RegisterJobsServer(g, listOnlyJobs{})
	go g.Serve(l)
	defer g.Stop()
	dead, err := devcluster.FreeAddr() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "status", "--timeout", "20s", "--coordinator", dead+", "+l.Addr().String())
	if err != nil || !strings.Contains(out, "from-the-live-node") {
		t.Fatalf("loom status --coordinator DEAD,LIVE = %q, %v; want the live node's job list", out, err)
	}
	for _, bad := range []string{"127.0.0.1", " , "} {
		_, err := run(t, "status", "--coordinator", bad)
		if err == nil || !strings.Contains(err.Error(), "--coordinator") {
			t.Errorf("loom status --coordinator %q: %v, want an error naming --coordinator", bad, err)
		}
	}
}

// TestTLSMismatchHint: a client without TLS against a coordinator that
// serves TLS, and one with TLS against a plaintext coordinator, are told
// which side speaks TLS, not only gRPC's "error reading server preface".
func TestTLSMismatchHint(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcert.NewCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("node")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(leaf.Cert, leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	loompb.RegisterJobsServer(g, listOnlyJobs{})
	go g.Serve(pl)
	defer g.Stop()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--coordinator", tl.Addr().String()}, "it may be serving TLS"},
		{[]string{"--coordinator", pl.Addr().String(), "--tls-ca", ca.Path, "--tls-cert", leaf.Cert, "--tls-key", leaf.Key}, "does not serve TLS"},
	} {
		out, err := exec.Command(loomBinary, append([]string{"status", "--timeout", "3s"}, c.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("loom status %s: %v, %s; want a failure saying %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}
}
