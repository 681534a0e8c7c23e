package worker

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
)

// workersServer is a minimal Workers service that names itself in every
// assignment and counts calls.
type workersServer struct {
	loompb.UnimplementedWorkersServer
	name    string
	mu      sync.Mutex
	reports int
	commits []string // request ids
	fails   []string // request ids of ReportFailure
	tokens  []string
	busy    int // CommitCheckpoint answers ResourceExhausted this many times first
}

func (s *workersServer) ReportFailure(ctx context.Context, req *loompb.ReportFailureRequest) (*loompb.ReportFailureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, req.RequestId)
	return &loompb.ReportFailureResponse{}, nil
}

func (s *workersServer) auth(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.tokens = append(s.tokens, md.Get("authorization")...)
	s.mu.Unlock()
}

func (s *workersServer) WatchAssignment(req *loompb.WatchAssignmentRequest, st loompb.Workers_WatchAssignmentServer) error {
	s.auth(st.Context())
	if err := st.Send(&loompb.Assignment{Job: s.name}); err != nil {
		return err
	}
	<-st.Context().Done()
	return nil
}

func (s *workersServer) ReportProgress(ctx context.Context, req *loompb.ReportProgressRequest) (*loompb.ReportProgressResponse, error) {
	s.auth(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports++
	if req.Generation < 0 {
		return nil, status.Error(codes.FailedPrecondition, "stale")
	}
	return &loompb.ReportProgressResponse{}, nil
}

func (s *workersServer) CommitCheckpoint(ctx context.Context, req *loompb.CommitCheckpointRequest) (*loompb.CommitCheckpointResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy > 0 {
		s.busy--
		return nil, status.Error(codes.ResourceExhausted, "role worker (worker token) has 8 writes in flight already; wait for them")
	}
	s.commits = append(s.commits, req.RequestId)
	return &loompb.CommitCheckpointResponse{}, nil
}

func serveWorkers(t *testing.T, name string) (*workersServer, string, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ws := &workersServer{name: name}
	g := grpc.NewServer()
	loompb.RegisterWorkersServer(g, ws)
	go g.Serve(lis)
	stop := sync.OnceFunc(g.Stop)
	t.Cleanup(stop)
	return ws, lis.Addr().String(), stop
}

func TestGRPCCoordinatorFailsOver(t *testing.T) {
	_, addrA, stopA := serveWorkers(t, "a")
	b, addrB, _ := serveWorkers(t, "b")
	c, err := NewGRPCCoordinator([]string{addrA, " ", addrB}, DialOptions("sekrit", nil)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	s, err := c.WatchAssignment(ctx, "w0")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := s.Recv(); err != nil || a.Job != "a" {
		t.Fatalf("first assignment: %v, %v; want it from coordinator a", a, err)
	}
	stopA() // coordinator a dies: the stream breaks and the client moves on
	if _, err := s.Recv(); err == nil {
		t.Fatal("stream from a stopped coordinator did not break")
	}
	if got := c.Addr(); got != addrB {
		t.Fatalf("after the break the client uses %s, want %s", got, addrB)
	}
	s, err = c.WatchAssignment(ctx, "w0")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := s.Recv(); err != nil || a.Job != "b" {
		t.Fatalf("assignment after failover: %v, %v; want it from coordinator b", a, err)
	}
	if err := c.ReportProgress(ctx, &loompb.ReportProgressRequest{Generation: 1}); err != nil {
		t.Fatalf("ReportProgress after failover: %v", err)
	}
	err = c.ReportProgress(ctx, &loompb.ReportProgressRequest{Generation: -1})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("ReportProgress(stale): %v, want FailedPrecondition passed through", err)
	}
	if err := c.CommitCheckpoint(ctx, &loompb.CommitCheckpointRequest{RequestId: "r1"}); err != nil {
		t.Fatalf("CommitCheckpoint: %v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reports != 2 || len(b.commits) != 1 || b.commits[0] != "r1" {
		t.Errorf("coordinator b saw %d reports and commits %v; want 2 and [r1]", b.reports, b.commits)
	}
	for _, tok := range b.tokens {
		if tok != "Bearer sekrit" {
			t.Errorf("authorization metadata %q, want the bearer token", tok)
		}
	}
}

func TestGRPCCoordinatorCommitRetriesUntilAvailable(t *testing.T) {
	// Nothing listens on the first address yet: the commit retries (the
	// same request id) until a coordinator answers.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	c, err := NewGRPCCoordinator([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ws := &workersServer{name: "late"}
	served := make(chan *grpc.Server, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("relisten: %v", err)
			return
		}
		g := grpc.NewServer()
		loompb.RegisterWorkersServer(g, ws)
		served <- g
		g.Serve(l)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.CommitCheckpoint(ctx, &loompb.CommitCheckpointRequest{RequestId: "r9", Step: 4}); err != nil {
		t.Fatalf("CommitCheckpoint: %v", err)
	}
	ws.mu.Lock()
	got := append([]string(nil), ws.commits...)
	ws.mu.Unlock()
	if len(got) != 1 || got[0] != "r9" {
		t.Errorf("commits seen: %v, want [r9]", got)
	}
	(<-served).Stop()
	if _, err := NewGRPCCoordinator([]string{" ", ""}); err == nil {
		t.Errorf("NewGRPCCoordinator(no address): no error")
	}
}

// ReportFailure moves past a coordinator that is down to the next one.
func TestGRPCCoordinatorReportFailureFailsOver(t *testing.T) {
	_, addrA, stopA := serveWorkers(t, "a")
	b, addrB, _ := serveWorkers(t, "b")
	stopA()
	c, err := NewGRPCCoordinator([]string{addrA, addrB})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.ReportFailure(ctx, &loompb.ReportFailureRequest{WorkerId: "w0", Job: "j", Generation: 3, Error: "boom", RequestId: "failure/j/3/w0"}); err != nil {
		t.Fatalf("ReportFailure with coordinator a down: %v", err)
	}
	b.mu.Lock()
	got := append([]string(nil), b.fails...)
	b.mu.Unlock()
	if len(got) != 1 || got[0] != "failure/j/3/w0" {
		t.Errorf("failure reports seen by coordinator b: %v, want [failure/j/3/w0]", got)
	}
}

// TestGRPCCoordinatorCommitRetriesWhenBusy: a coordinator at its write
// limit (ResourceExhausted, "wait for them") delays a commit; it does not
// fail it (the worker's generation used to fail there, CI 2026-12-07).
func TestGRPCCoordinatorCommitRetriesWhenBusy(t *testing.T) {
	ws, addr, _ := serveWorkers(t, "busy")
	ws.busy = 3
	c, err := NewGRPCCoordinator([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.CommitCheckpoint(ctx, &loompb.CommitCheckpointRequest{RequestId: "r1", Step: 2}); err != nil {
		t.Fatalf("CommitCheckpoint: %v", err)
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if len(ws.commits) != 1 || ws.busy != 0 {
		t.Errorf("commits %v after %d refusals left, want [r1] after all 3", ws.commits, ws.busy)
	}
}
