package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/internal/grpcauth"
)

// clientFlags are shared by the commands that talk to a coordinator.
type clientFlags struct {
	addr      string
	tls       coordinator.TLSFiles
	timeout   time.Duration
	tokenFile string
	// tokenEnv is the variable the token comes from without --token-file:
	// LOOM_TOKEN (users) unless a command sets it (LOOM_ADMIN_TOKEN).
	tokenEnv string
}

func (c *clientFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&c.addr, "coordinator", firstNonEmpty(os.Getenv("LOOM_COORDINATOR"), "127.0.0.1:7001"),
		"gRPC addresses of coordinator nodes, comma-separated host:port; the first that answers is used, the next ones if it fails (default $LOOM_COORDINATOR or 127.0.0.1:7001)")
	fl.StringVar(&c.tls.Cert, "tls-cert", "", "client certificate (PEM) when the coordinator uses mutual TLS")
	fl.StringVar(&c.tls.Key, "tls-key", "", "private key of --tls-cert")
	fl.StringVar(&c.tls.CA, "tls-ca", "", "CA (PEM) that signed the coordinator's certificate")
	fl.StringVar(&c.tls.ServerName, "tls-server-name", "", "name to verify the coordinator's certificate against (default: the host dialled)")
	fl.DurationVar(&c.timeout, "timeout", 30*time.Second, "how long to wait for the coordinator")
	if c.tokenEnv == "" {
		c.tokenEnv = "LOOM_TOKEN"
	}
	fl.StringVar(&c.tokenFile, "token-file", "", "file holding the bearer token (default $"+c.tokenEnv+")")
}

// dial connects to the coordinator; the bearer token comes from
// --token-file or the environment (LOOM_TOKEN; LOOM_ADMIN_TOKEN for loom
// cluster), never from the command line.
func (c *clientFlags) dial() (*grpc.ClientConn, error) {
	env := c.tokenEnv
	if env == "" {
		env = "LOOM_TOKEN"
	}
	token, err := grpcauth.ReadSecret(c.tokenFile, env)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	opts := coordinator.DialOptions(token, nil)
	if c.tls.Enabled() {
		conf, err := c.tls.CoordinatorClientConfig(nil)
		if err != nil {
			return nil, err
		}
		opts = coordinator.DialOptions(token, conf)
	}
	target, ropts, err := coordinatorTarget(c.addr)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(target, append(opts, ropts...)...)
	if err != nil {
		return nil, fmt.Errorf("--coordinator %s: %w", c.addr, err)
	}
	return cc, nil
}

// coordinatorTarget turns --coordinator (and $LOOM_COORDINATOR), a
// comma-separated list of host:port as workers take it, into a gRPC
// target: one address as it is, several through a resolver that hands
// gRPC all of them, so that the connection goes to the first that
// answers and moves on when it fails (pick_first). Any node serves: a
// follower forwards writes to the leader.
func coordinatorTarget(list string) (string, []grpc.DialOption, error) {
	var addrs []resolver.Address
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return "", nil, fmt.Errorf("--coordinator %q: address %q: %v (want host:port, comma-separated)", list, a, err)
		}
		addrs = append(addrs, resolver.Address{Addr: a, ServerName: host})
	}
	switch len(addrs) {
	case 0:
		return "", nil, fmt.Errorf("--coordinator %q: no address (want host:port, comma-separated)", list)
	case 1:
		return addrs[0].Addr, nil, nil
	}
	r := manual.NewBuilderWithScheme("loom-coordinators")
	r.InitialState(resolver.State{Addresses: addrs})
	return r.Scheme() + ":///" + addrs[0].Addr, []grpc.DialOption{grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"pick_first": {}}]}`)}, nil
}

func (c *clientFlags) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, c.timeout)
}

// rpcError turns a gRPC status into a message for people, and an exit code:
// 2 for a request the coordinator refused, 3 when it could not be reached.
func rpcError(addr string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return &exitError{code: 3, err: fmt.Errorf("coordinator %s unavailable: %s%s", addr, st.Message(), tlsHint(st.Message()))}
	case codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted:
		return &exitError{code: 2, err: errors.New(st.Message())}
	}
	return &exitError{code: 2, err: errors.New(st.Message())}
}

// tlsHint says what a connection error that comes from TLS on one side
// only most likely means: gRPC's own words ("error reading server
// preface: EOF") do not say it.
func tlsHint(msg string) string {
	switch {
	case strings.Contains(msg, "error reading server preface"):
		return " (the coordinator closed the connection at once: it may be serving TLS, which this client does not speak without --tls-ca, --tls-cert and --tls-key)"
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return " (the coordinator does not serve TLS: leave out the --tls-* flags, or start it with --tls-cert, --tls-key and --tls-ca)"
	}
	return ""
}

func jobsClient(cc *grpc.ClientConn) loompb.JobsClient { return loompb.NewJobsClient(cc) }
