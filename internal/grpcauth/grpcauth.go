// Package grpcauth holds the client side of the coordinator's gRPC
// authentication, shared by everything that dials a coordinator (the CLI,
// workers, followers forwarding to the leader): transport credentials and
// the per-call bearer token.
package grpcauth

import (
	"context"
	"crypto/tls"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// DialOptions returns TLS transport credentials when tlsConf is non-nil
// (plaintext otherwise; TLS failures say whose certificate who rejected) and, when token is non-empty, a per-call
// "authorization: Bearer TOKEN" header.
func DialOptions(token string, tlsConf *tls.Config) []grpc.DialOption {
	var opts []grpc.DialOption
	if tlsConf != nil {
		opts = append(opts, grpc.WithTransportCredentials(TLSCredentials(tlsConf, "this client", nil)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(Bearer{Token: token, Secure: tlsConf != nil}))
	}
	return opts
}

// Bearer is a grpc.PerRPCCredentials that sends the token on every call.
// Secure says whether it may only travel over TLS.
type Bearer struct {
	Token  string
	Secure bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.Token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (b Bearer) RequireTransportSecurity() bool { return b.Secure }
