package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/loomtrain/loom/internal/grpcauth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
)

// GRPCCoordinator is a Coordinator over gRPC that fails over between
// coordinator addresses: any node answers the Workers service (followers
// forward writes to the leader), so a call that finds its node unavailable
// moves on to the next address. It is safe for concurrent use.
type GRPCCoordinator struct {
	addrs []string
	opts  []grpc.DialOption

	mu    sync.Mutex // guards cur and conns
	cur   int
	conns []*grpc.ClientConn
}

// NewGRPCCoordinator returns a client of the coordinators at addrs
// (host:port each). Connections are made lazily.
func NewGRPCCoordinator(addrs []string, opts ...grpc.DialOption) (*GRPCCoordinator, error) {
	var clean []string
	for _, a := range addrs {
		if a = strings.TrimSpace(a); a != "" {
			clean = append(clean, a)
		}
	}
	if len(clean) == 0 {
		return nil, errors.New("worker: no coordinator address (set --coordinator or LOOM_COORDINATOR)")
	}
	if len(opts) == 0 {
		opts = DialOptions("", nil)
	}
	c := &GRPCCoordinator{addrs: clean, opts: opts, conns: make([]*grpc.ClientConn, len(clean))}
	for i, a := range clean {
		cc, err := grpc.NewClient(a, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("worker: coordinator address %q: %w", a, err)
		}
		c.conns[i] = cc
	}
	return c, nil
}

// DialOptions are the options to reach a coordinator: TLS when tlsConf is
// set (plain otherwise) and the bearer token when non-empty (LOOM_TOKEN).
func DialOptions(token string, tlsConf *tls.Config) []grpc.DialOption {
	return grpcauth.DialOptions(token, tlsConf)
}

// Close closes every connection.
func (c *GRPCCoordinator) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cc := range c.conns {
		if cc != nil {
			cc.Close()
		}
	}
	return nil
}

// Addr is the coordinator address calls go to now.
func (c *GRPCCoordinator) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[c.cur]
}

func (c *GRPCCoordinator) client() (loompb.WorkersClient, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return loompb.NewWorkersClient(c.conns[c.cur]), c.cur
}

// failover moves to the next address, unless another call already did.
func (c *GRPCCoordinator) failover(from int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == from {
		c.cur = (c.cur + 1) % len(c.addrs)
	}
}

// unavailable reports whether err means "try another coordinator".
func unavailable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Unknown, codes.Internal, codes.Canceled:
		return true
	}
	return false
}

// WatchAssignment implements Coordinator. A stream that cannot be opened,
// or that later breaks, moves the client to the next address.
func (c *GRPCCoordinator) WatchAssignment(ctx context.Context, workerID string) (AssignmentStream, error) {
	cl, i := c.client()
	s, err := cl.WatchAssignment(ctx, &loompb.WatchAssignmentRequest{WorkerId: workerID})
	if err != nil {
		c.failover(i)
		return nil, err
	}
	return &failoverStream{s: s, c: c, i: i}, nil
}

type failoverStream struct {
	s loompb.Workers_WatchAssignmentClient
	c *GRPCCoordinator
	i int
}

func (f *failoverStream) Recv() (*loompb.Assignment, error) {
	a, err := f.s.Recv()
	if err != nil {
		f.c.failover(f.i)
	}
	return a, err
}

// callTimeout bounds one unary call to one coordinator.
const callTimeout = 10 * time.Second

// call runs fn against the current coordinator, moving on to the next one
// on an availability error, at most once per address.
func (c *GRPCCoordinator) call(ctx context.Context, fn func(context.Context, loompb.WorkersClient) error) error {
	var err error
	for range c.addrs {
		cl, i := c.client()
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err = fn(cctx, cl)
		cancel()
		if err == nil || !unavailable(err) || ctx.Err() != nil {
			return err
		}
		c.failover(i)
	}
	return err
}

// ReportProgress implements Coordinator.
func (c *GRPCCoordinator) ReportProgress(ctx context.Context, req *loompb.ReportProgressRequest) error {
	return c.call(ctx, func(ctx context.Context, cl loompb.WorkersClient) error {
		_, err := cl.ReportProgress(ctx, req)
		return err
	})
}

// ReportFailure implements Coordinator. Like CommitCheckpoint, it retries
// across coordinators until ctx ends or one answers.
func (c *GRPCCoordinator) ReportFailure(ctx context.Context, req *loompb.ReportFailureRequest) error {
	return c.retry(ctx, fmt.Sprintf("report failure of job %q generation %d", req.Job, req.Generation), func(ctx context.Context, cl loompb.WorkersClient) error {
		_, err := cl.ReportFailure(ctx, req)
		return err
	})
}

// CommitCheckpoint implements Coordinator. It retries across coordinators
// (the request_id makes a retry apply once) until ctx ends or the
// coordinator answers with something other than unavailability or
// ResourceExhausted (all the workers sharing one token share its write
// limit, so a busy cluster can refuse a commit for a moment).
func (c *GRPCCoordinator) CommitCheckpoint(ctx context.Context, req *loompb.CommitCheckpointRequest) error {
	return c.retry(ctx, fmt.Sprintf("commit checkpoint at step %d", req.Step), func(ctx context.Context, cl loompb.WorkersClient) error {
		_, err := cl.CommitCheckpoint(ctx, req)
		return err
	})
}

// retry calls fn across coordinators, with backoff, until it succeeds, fails
// with something other than unavailability or a coordinator's "too many
// in flight, retry" (ResourceExhausted: its per-client write limit, or a
// full report batch), or ctx ends. what names the call in the error.
func (c *GRPCCoordinator) retry(ctx context.Context, what string, fn func(context.Context, loompb.WorkersClient) error) error {
	backoff := 100 * time.Millisecond
	for {
		err := c.call(ctx, fn)
		if err == nil || !(unavailable(err) || status.Code(err) == codes.ResourceExhausted) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
