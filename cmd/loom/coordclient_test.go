package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/devcluster"
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
