package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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
	fl.StringVar(&c.addr, "coordinator", firstNonEmpty(os.Getenv("LOOM_COORDINATOR"), "127.0.0.1:7001"), "gRPC address of any coordinator node (default $LOOM_COORDINATOR or 127.0.0.1:7001)")
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
	cc, err := grpc.NewClient(c.addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("--coordinator %s: %w", c.addr, err)
	}
	return cc, nil
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
		return &exitError{code: 3, err: fmt.Errorf("coordinator %s unavailable: %s", addr, st.Message())}
	case codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted:
		return &exitError{code: 2, err: errors.New(st.Message())}
	}
	return &exitError{code: 2, err: errors.New(st.Message())}
}

func jobsClient(cc *grpc.ClientConn) loompb.JobsClient { return loompb.NewJobsClient(cc) }
