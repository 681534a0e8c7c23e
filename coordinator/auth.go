package coordinator

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/loomtrain/loom/internal/grpcauth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Role is a caller's role; see grpcauth.
type Role = grpcauth.Role

// The roles, re-exported for the callers of this package.
const (
	RoleNode   = grpcauth.Node
	RoleWorker = grpcauth.Worker
	RoleUser   = grpcauth.User
	RoleAdmin  = grpcauth.Admin
)

// Auth says how the API server proves who calls it and what each caller
// may do. Every call must prove exactly one role (invariant 8):
//
//   - with mutual TLS (Certs), by the client certificate's role URI
//     (spiffe://loom/role/ROLE; a worker's may add /ID), optionally chained
//     to that role's own CA (RoleCAs);
//   - with bearer tokens, by presenting the token of its role (Tokens).
//
// A certificate that names a role decides; a token is consulted only when
// the certificate names none. The zero Auth is open: no authentication,
// every caller holds every role (for loom dev and tests only). Limits on
// input sizes and on concurrent mutating calls apply either way.
type Auth struct {
	Tokens  map[Role]string
	Certs   bool
	RoleCAs grpcauth.RolePools
	// MaxInflight bounds the mutating calls (writes through Raft) one
	// client may have in flight; more are refused with RESOURCE_EXHAUSTED.
	// Default DefaultMaxInflight. Nodes are exempt: they carry every
	// client's forwarded writes.
	MaxInflight int
	// MaxStreams bounds one client's open watch streams (default
	// DefaultMaxStreams).
	MaxStreams int
	Logger     *slog.Logger

	once    sync.Once
	clients *clientLimiter
}

// Defaults of Auth.
const (
	DefaultMaxInflight = 8
	DefaultMaxStreams  = 32
)

// Open reports whether authentication is off.
func (a *Auth) Open() bool { return a == nil || (len(a.Tokens) == 0 && !a.Certs) }

// Check refuses an inconsistent configuration: unknown roles, empty
// tokens, one token for two roles (which would merge the roles).
func (a *Auth) Check() error {
	seen := map[string]Role{}
	for _, r := range grpcauth.Roles {
		t, ok := a.Tokens[r]
		if !ok {
			continue
		}
		if t == "" {
			return fmt.Errorf("the %s token is empty", r)
		}
		if other, dup := seen[t]; dup {
			return fmt.Errorf("the %s and %s tokens are the same; give every role its own token", other, r)
		}
		seen[t] = r
	}
	for r := range a.Tokens {
		if !r.Valid() {
			return fmt.Errorf("token for unknown role %q", r)
		}
	}
	for r := range a.RoleCAs {
		if !r.Valid() {
			return fmt.Errorf("CA for unknown role %q", r)
		}
	}
	return nil
}

func (a *Auth) init() {
	a.once.Do(func() {
		if a.MaxInflight == 0 {
			a.MaxInflight = DefaultMaxInflight
		}
		if a.MaxStreams == 0 {
			a.MaxStreams = DefaultMaxStreams
		}
		if a.Logger == nil {
			a.Logger = slog.Default()
		}
		a.clients = &clientLimiter{n: map[string]int{}}
	})
}

type identityKey struct{}

// CallerIdentity returns the identity the API server authenticated for
// the call whose context this is.
func CallerIdentity(ctx context.Context) (grpcauth.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(grpcauth.Identity)
	return id, ok
}

// authenticate works out the caller's identity, and a key naming the
// client for the per-client limits.
func (a *Auth) authenticate(ctx context.Context) (grpcauth.Identity, string, error) {
	host := "?"
	p, _ := peer.FromContext(ctx)
	if p != nil && p.Addr != nil {
		host = p.Addr.String()
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	if a.Open() {
		return grpcauth.Identity{Via: "open", Name: "anyone"}, "open@" + host, nil
	}
	var certErr error
	if a.Certs && p != nil {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			leaf := ti.State.PeerCertificates[0]
			id, err := a.RoleCAs.Verify(leaf, ti.State.PeerCertificates[1:])
			if err == nil {
				sum := sha256.Sum256(leaf.Raw)
				if tr, ok := a.tokenRole(ctx); ok && tr != id.Role {
					return grpcauth.Identity{}, "", status.Errorf(codes.Unauthenticated, "the certificate proves role %s but the bearer token is the %s token; send one credential", id.Role, tr)
				}
				return id, string(id.Role) + "/" + hex.EncodeToString(sum[:8]), nil
			}
			certErr = err
		}
	}
	if r, ok := a.tokenRole(ctx); ok {
		return grpcauth.Identity{Role: r, Via: "token", Name: string(r) + " token"}, string(r) + "@" + host, nil
	}
	switch {
	case certErr != nil && len(a.Tokens) > 0:
		return grpcauth.Identity{}, "", status.Errorf(codes.Unauthenticated, "%v, and no role's bearer token was sent", certErr)
	case certErr != nil:
		return grpcauth.Identity{}, "", status.Error(codes.Unauthenticated, certErr.Error())
	case a.Certs && len(a.Tokens) == 0:
		return grpcauth.Identity{}, "", status.Error(codes.Unauthenticated, "no client certificate with a role (spiffe://loom/role/ROLE)")
	}
	return grpcauth.Identity{}, "", status.Error(codes.Unauthenticated, "missing or wrong bearer token: set the token of your role (LOOM_TOKEN for users, LOOM_ADMIN_TOKEN for admins, LOOM_WORKER_TOKEN for workers, LOOM_NODE_TOKEN for nodes) or its --*token-file")
}

// tokenRole returns the role whose token the call carries.
func (a *Auth) tokenRole(ctx context.Context) (Role, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		got, ok := strings.CutPrefix(v, "Bearer ")
		if !ok {
			continue
		}
		found, match := Role(""), false
		for _, r := range grpcauth.Roles { // every token compared: constant time in the role
			t, ok := a.Tokens[r]
			if ok && subtle.ConstantTimeCompare([]byte(got), []byte(t)) == 1 {
				found, match = r, true
			}
		}
		if match {
			return found, true
		}
	}
	return "", false
}

// authorize checks the method's rule against the identity and the
// request (nil for a stream before its first message).
func authorize(method string, id grpcauth.Identity, req proto.Message) error {
	rule, ok := rules[method]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "%s: no role may call it", method)
	}
	if id.Via != "open" && !slices.Contains(rule.roles, id.Role) {
		return status.Errorf(codes.PermissionDenied, "%s may not call %s (%s only)", describe(id), shortMethod(method), roleList(rule.roles))
	}
	if req == nil {
		return nil
	}
	if err := CheckLimits(req); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if id.Role == RoleWorker && id.ID != "" {
		if w, ok := req.(interface{ GetWorkerId() string }); ok && w.GetWorkerId() != id.ID {
			return status.Errorf(codes.PermissionDenied, "%s may speak only for worker %q, not %q", describe(id), id.ID, w.GetWorkerId())
		}
	}
	return nil
}

func describe(id grpcauth.Identity) string {
	if id.ID != "" {
		return fmt.Sprintf("%s %q (%s %s)", id.Role, id.ID, id.Via, id.Name)
	}
	return fmt.Sprintf("role %s (%s)", id.Role, id.Name)
}

func shortMethod(m string) string {
	m = strings.TrimPrefix(m, "/loom.v1.")
	return strings.Replace(m, "/", ".", 1)
}

func roleList(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// ServerOptions returns the interceptors that authenticate, authorise and
// limit every call, and the message size limit.
func (a *Auth) ServerOptions() []grpc.ServerOption {
	a.init()
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.ChainUnaryInterceptor(a.unary),
		grpc.ChainStreamInterceptor(a.stream),
	}
}

func (a *Auth) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	id, client, err := a.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	m, _ := req.(proto.Message)
	if m == nil {
		return nil, status.Errorf(codes.Internal, "%s: request is not a protobuf message", info.FullMethod)
	}
	if err := authorize(info.FullMethod, id, m); err != nil {
		a.Logger.Debug("call refused", "method", info.FullMethod, "caller", describe(id), "err", err)
		return nil, err
	}
	if rules[info.FullMethod].mutating && id.Role != RoleNode {
		if !a.clients.acquire("w/"+client, a.MaxInflight) {
			return nil, status.Errorf(codes.ResourceExhausted, "%s has %d writes in flight already; wait for them", describe(id), a.MaxInflight)
		}
		defer a.clients.release("w/" + client)
	}
	return h(context.WithValue(ctx, identityKey{}, id), req)
}

func (a *Auth) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	id, client, err := a.authenticate(ss.Context())
	if err != nil {
		return err
	}
	if err := authorize(info.FullMethod, id, nil); err != nil {
		return err
	}
	if !a.clients.acquire("s/"+client, a.MaxStreams) {
		return status.Errorf(codes.ResourceExhausted, "%s has %d streams open already", describe(id), a.MaxStreams)
	}
	defer a.clients.release("s/" + client)
	return h(srv, &checkedStream{ServerStream: ss, method: info.FullMethod, id: id,
		ctx: context.WithValue(ss.Context(), identityKey{}, id)})
}

// checkedStream checks every message a client sends on a stream.
type checkedStream struct {
	grpc.ServerStream
	method string
	id     grpcauth.Identity
	ctx    context.Context
}

func (s *checkedStream) Context() context.Context { return s.ctx }

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "%s: message is not a protobuf message", s.method)
	}
	return authorize(s.method, s.id, pm)
}

// clientLimiter counts what each client has in flight.
type clientLimiter struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *clientLimiter) acquire(key string, max int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key] >= max {
		return false
	}
	l.n[key]++
	return true
}

func (l *clientLimiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key]--; l.n[key] <= 0 {
		delete(l.n, key)
	}
}

// DialOptions returns the options a client (the CLI, a worker, a follower
// forwarding to the leader) uses to reach a coordinator: TLS when tlsConf is
// non-nil (insecure otherwise) and the bearer token when non-empty.
func DialOptions(token string, tlsConf *tls.Config) []grpc.DialOption {
	return grpcauth.DialOptions(token, tlsConf)
}

// TLSFiles names the PEM files of a mutual-TLS setup.
type TLSFiles struct {
	Cert string // this side's certificate
	Key  string // its private key
	CA   string // the CA that signed the other side's certificate
	// ServerName overrides the name a client checks the server's
	// certificate against (default: the host it dials).
	ServerName string
}

// Enabled reports whether any TLS file is set.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// ServerConfig returns a TLS config that presents Cert and requires client
// certificates signed by CA, or by one of the CA files in extra (the
// per-role CAs).
func (f TLSFiles) ServerConfig(extra ...string) (*tls.Config, error) {
	cert, _, err := f.load()
	if err != nil {
		return nil, err
	}
	pool, err := loadPEMs(append([]string{f.CA}, extra...)...)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
}

// ClientConfig returns a TLS config that presents Cert and verifies the
// server against CA.
func (f TLSFiles) ClientConfig() (*tls.Config, error) {
	cert, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: f.ServerName, MinVersion: tls.VersionTLS12}, nil
}

// CoordinatorClientConfig is ClientConfig that also requires the server's
// certificate to prove the node role: a client talks to coordinators only,
// not to anything else the CA signed.
func (f TLSFiles) CoordinatorClientConfig(nodeCA *x509.CertPool) (*tls.Config, error) {
	c, err := f.ClientConfig()
	if err != nil {
		return nil, err
	}
	if nodeCA != nil {
		c.RootCAs = nodeCA
	}
	c.VerifyConnection = grpcauth.RequireRole(grpcauth.RolePools{grpcauth.Node: nodeCA}, grpcauth.Node)
	return c, nil
}

// PeerConfig returns one TLS config for connections between coordinator
// nodes (the Raft transport), which both accept and dial: it presents Cert
// either way, requires the peer's certificate, verifies it against CA (or
// nodeCA, when set) and admits only certificates of the node role.
func (f TLSFiles) PeerConfig(nodeCA *x509.CertPool) (*tls.Config, error) {
	cert, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	if nodeCA != nil {
		pool = nodeCA
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		VerifyConnection: grpcauth.RequireRole(grpcauth.RolePools{grpcauth.Node: nodeCA}, grpcauth.Node)}, nil
}

func (f TLSFiles) load() (tls.Certificate, *x509.CertPool, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return tls.Certificate{}, nil, fmt.Errorf("mutual TLS needs a certificate, a key and a CA file (got cert=%q key=%q ca=%q)", f.Cert, f.Key, f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load TLS key pair %s, %s: %w", f.Cert, f.Key, err)
	}
	pool, err := LoadCAPool(f.CA)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return cert, pool, nil
}

// LoadCAPool reads a PEM bundle of CA certificates.
func LoadCAPool(path string) (*x509.CertPool, error) { return loadPEMs(path) }

// loadPEMs reads the CA certificates of every file into one pool.
func loadPEMs(paths ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, path := range paths {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
		}
	}
	return pool, nil
}
