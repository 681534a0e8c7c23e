package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/coordinator/consensus"
	"github.com/loomtrain/loom/internal/grpcauth"
	"github.com/loomtrain/loom/shard"
)

func init() { rootCmd.AddCommand(newCoordinatorCmd()) }

// coordinatorFlags are the flags of `loom coordinator`. Their names are
// stable: deploy/k8s is tested against them.
type coordinatorFlags struct {
	id, dataDir             string
	raftAddr, raftAdvertise string
	grpcAddr, grpcAdvertise string
	httpAddr                string
	peers                   string
	join                    string
	etcd, etcdPrefix        string
	token                   string // the removed --token: refused
	tokens                  tokenFiles
	tls                     coordinator.TLSFiles
	roleCA                  map[coordinator.Role]*string
	etcdTLS                 coordinator.TLSFiles
	s3                      s3Flags
	tick                    time.Duration
	workerLogs              string
}

func newCoordinatorCmd() *cobra.Command {
	var f coordinatorFlags
	c := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a coordinator node (Raft-replicated control plane: jobs, workers, checkpoints)",
		Long: `Runs one node of the coordinator: the Raft-replicated state of every job, worker
and committed checkpoint; the gRPC API that loom submit/status/cancel/resume and
the workers call; and, on the leader, the scheduler (gang scheduling, failure
handling, stage advancement, checkpoint retention).

Run 1, 3 or 5 nodes. On first start a node with --peers bootstraps the cluster
with exactly those voters (every node gets the same list); a node with --join
asks an existing cluster to add it instead. Later starts recover from --data-dir
and ignore both. With neither flag a node bootstraps a cluster of one.

Any node answers; writes sent to a follower are forwarded to the leader. Workers
are found in etcd (--etcd) under --etcd-prefix. Retired checkpoints are deleted
from S3 when --s3-endpoint is set. /healthz, /readyz (a leader is known) and
/metrics (Prometheus) are served on --http-addr, and the web UI at / (jobs,
loss curves, restarts, checkpoints, the cluster; docs/webui.md), which asks
for the users' token when there is one. --worker-logs DIR lets the UI show
the tail of each worker's log from DIR/WORKER.log (loom dev sets it).

Every caller proves one role: node (another coordinator), worker, user or
admin. With tokens, each role has its own, read from a file (--node-token-file,
--worker-token-file, --token-file for users, --admin-token-file) or from
LOOM_NODE_TOKEN, LOOM_WORKER_TOKEN, LOOM_TOKEN, LOOM_ADMIN_TOKEN; never from
the command line. The node token also authenticates the Raft transport: a
connection that does not prove it is closed before Raft reads it.
--tls-cert, --tls-key and --tls-ca turn on mutual TLS for every connection of
the node: a certificate proves its role with a URI SAN spiffe://loom/role/ROLE
(a worker's may add /ID), this node's must prove node (and name the advertised
host), and the Raft transport admits node certificates only. --tls-ROLE-ca
restricts a role to certificates of its own CA. Without tokens and TLS nothing
is authenticated (loom dev). --etcd-tls-* are mutual TLS to etcd.

Example (a three-node cluster on one machine):
  loom coordinator --id c0 --data-dir /tmp/c0 --raft-addr 127.0.0.1:7000 --grpc-addr 127.0.0.1:7001 --http-addr 127.0.0.1:7002 \
      --peers c0=127.0.0.1:7000,c1=127.0.0.1:7010,c2=127.0.0.1:7020 --etcd http://127.0.0.1:2379
  loom coordinator --id c1 --data-dir /tmp/c1 --raft-addr 127.0.0.1:7010 --grpc-addr 127.0.0.1:7011 --http-addr 127.0.0.1:7012 \
      --peers c0=127.0.0.1:7000,c1=127.0.0.1:7010,c2=127.0.0.1:7020 --etcd http://127.0.0.1:2379
  (and c2 likewise), then: loom status --coordinator 127.0.0.1:7011`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runCoordinator(ctx, f, nil)
		},
	}
	host, _ := os.Hostname()
	fl := c.Flags()
	fl.StringVar(&f.id, "id", host, "this node's stable Raft ID (the pod name in a StatefulSet)")
	fl.StringVar(&f.dataDir, "data-dir", "loom-coordinator", "directory for the Raft log, stable store and snapshots")
	fl.StringVar(&f.raftAddr, "raft-addr", "0.0.0.0:7000", "host:port the Raft transport listens on")
	fl.StringVar(&f.raftAdvertise, "raft-advertise", "", "host:port other nodes dial for Raft, e.g. coord-0.coord.ns.svc:7000 (default: --raft-addr)")
	fl.StringVar(&f.grpcAddr, "grpc-addr", "0.0.0.0:7001", "host:port the gRPC API listens on")
	fl.StringVar(&f.grpcAdvertise, "grpc-advertise", "", "host:port other nodes dial for the API (default: the --raft-advertise host with the --grpc-addr port)")
	fl.StringVar(&f.httpAddr, "http-addr", "0.0.0.0:7002", "host:port for /healthz, /readyz and /metrics (empty: off)")
	fl.StringVar(&f.peers, "peers", "", "initial voters as id=raft-host:port,... (first start only; include this node)")
	fl.StringVar(&f.join, "join", "", "gRPC address of a running coordinator to join through (first start only)")
	fl.StringVar(&f.etcd, "etcd", os.Getenv("LOOM_ETCD_ENDPOINTS"), "comma-separated etcd endpoints of the worker registry (env LOOM_ETCD_ENDPOINTS; empty: no registry)")
	fl.StringVar(&f.etcdPrefix, "etcd-prefix", "/loom/workers", "etcd key prefix the workers register under")
	fl.StringVar(&f.token, "token", "", "removed: it showed the secret in ps; use --token-file or LOOM_TOKEN")
	_ = fl.MarkHidden("token")
	f.tokens.register(fl)
	fl.StringVar(&f.tls.Cert, "tls-cert", "", "PEM certificate of this node, proving role node (mutual TLS for the API and between nodes, Raft included)")
	fl.StringVar(&f.tls.Key, "tls-key", "", "PEM private key of --tls-cert")
	fl.StringVar(&f.tls.CA, "tls-ca", "", "PEM CA that signs client and node certificates")
	f.roleCA = map[coordinator.Role]*string{}
	for _, r := range grpcauth.Roles {
		f.roleCA[r] = fl.String("tls-"+string(r)+"-ca", "", "PEM CA that alone may sign "+string(r)+" certificates (default: --tls-ca)")
	}
	fl.StringVar(&f.etcdTLS.Cert, "etcd-tls-cert", "", "PEM client certificate for etcd (mutual TLS to the registry)")
	fl.StringVar(&f.etcdTLS.Key, "etcd-tls-key", "", "PEM private key of --etcd-tls-cert")
	fl.StringVar(&f.etcdTLS.CA, "etcd-tls-ca", "", "PEM CA that signed etcd's server certificate")
	f.s3.register(fl, "S3 endpoint for deleting retired checkpoints (empty: keep them)")
	fl.DurationVar(&f.tick, "tick", time.Second, "scheduler period on the leader")
	fl.StringVar(&f.workerLogs, "worker-logs", "", "directory holding the workers' logs as WORKER.log, for the web UI (empty: the UI says where logs are)")
	return c
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// parsePeers parses "id=host:port,...".
func parsePeers(s string) ([]consensus.Peer, error) {
	var out []consensus.Peer
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, addr, ok := strings.Cut(part, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peers entry %q: want id=host:port", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--peers entry %q: %v", part, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("--peers: id %q listed twice", id)
		}
		seen[id] = true
		out = append(out, consensus.Peer{ID: id, Addr: addr})
	}
	return out, nil
}

// apiAdvertise is the gRPC address other nodes dial.
func apiAdvertise(f coordinatorFlags, raftAdvertise string) (string, error) {
	if f.grpcAdvertise != "" {
		return f.grpcAdvertise, nil
	}
	_, gport, err := net.SplitHostPort(f.grpcAddr)
	if err != nil {
		return "", fmt.Errorf("--grpc-addr %q: %v", f.grpcAddr, err)
	}
	host, _, err := net.SplitHostPort(raftAdvertise)
	if err != nil {
		return "", fmt.Errorf("raft address %q: %v", raftAdvertise, err)
	}
	if host == "0.0.0.0" || host == "::" || host == "" {
		host, _ = os.Hostname()
	}
	return net.JoinHostPort(host, gport), nil
}

// runCoordinator runs a node until ctx ends. ready, when set, is called
// with the gRPC and HTTP addresses once both listen.
func runCoordinator(ctx context.Context, f coordinatorFlags, ready func(api, http string)) error {
	log := slog.Default().With("node", f.id)
	if f.id == "" {
		return errors.New("--id is required")
	}
	auth, nodeToken, err := coordinatorAuth(f)
	if err != nil {
		return err
	}
	peers, err := parsePeers(f.peers)
	if err != nil {
		return err
	}
	s3cfg, err := f.s3.config()
	if err != nil {
		return err
	}
	if len(peers) > 0 && f.join != "" {
		return errors.New("--peers and --join are exclusive: bootstrap with --peers, or join a running cluster with --join")
	}
	if len(peers) == 0 && f.join == "" {
		peers = []consensus.Peer{{ID: f.id}} // a cluster of one; Addr filled in by consensus
	}
	if f.join != "" {
		peers = nil
	}
	if err := os.MkdirAll(f.dataDir, 0o755); err != nil {
		return err
	}
	var serverTLS, clientTLS, peerTLS, etcdTLS *tls.Config
	if f.tls.Enabled() {
		var extra []string
		for _, r := range grpcauth.Roles {
			if p := f.roleCAFile(r); p != "" {
				extra = append(extra, p)
			}
		}
		if serverTLS, err = f.tls.ServerConfig(extra...); err != nil {
			return err
		}
		nodeCA := auth.RoleCAs[coordinator.RoleNode]
		if clientTLS, err = f.tls.CoordinatorClientConfig(nodeCA); err != nil {
			return err
		}
		if peerTLS, err = f.tls.PeerConfig(nodeCA); err != nil {
			return err
		}
		if err := checkOwnRole(serverTLS, auth.RoleCAs); err != nil {
			return err
		}
	}
	if f.etcdTLS.Enabled() {
		if etcdTLS, err = f.etcdTLS.ClientConfig(); err != nil {
			return fmt.Errorf("etcd TLS: %w", err)
		}
	}
	fsm := coordinator.NewFSM()
	rn, err := consensus.Open(consensus.Config{ID: f.id, DataDir: filepath.Join(f.dataDir, "raft"), BindAddr: f.raftAddr,
		AdvertiseAddr: f.raftAdvertise, Bootstrap: peers, Logger: log.With("component", "raft"), TLS: peerTLS, NodeToken: nodeToken}, fsm)
	if err != nil {
		return fmt.Errorf("open raft: %w", err)
	}
	defer rn.Close()
	lis, err := net.Listen("tcp", f.grpcAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	bound := f
	bound.grpcAddr = lis.Addr().String() // the real port when --grpc-addr asks for :0
	apiAddr, err := apiAdvertise(bound, rn.Addr())
	if err != nil {
		lis.Close()
		return err
	}
	dialOpts := coordinator.DialOptions(nodeToken, clientTLS)
	srv := coordinator.NewServer(coordinator.ServerConfig{NodeID: f.id, Raft: rn, FSM: fsm, ForwardDial: dialOpts, Logger: log})
	auth.Logger = log
	if auth.Open() {
		log.Warn("authentication is off: anyone who reaches the API or the Raft port holds every role; set the role tokens or mutual TLS")
	}
	gopts := auth.ServerOptions()
	if serverTLS != nil {
		gopts = append(gopts, grpc.Creds(grpcauth.TLSCredentials(serverTLS, "coordinator "+f.id, log)))
	}
	g := grpc.NewServer(gopts...)
	srv.Register(g)

	ncfg := coordinator.NodeConfig{ID: f.id, APIAddr: apiAddr, Raft: rn, FSM: fsm, Server: srv, Tick: f.tick, Logger: log}
	if f.etcd != "" {
		reg, closeReg, err := newEtcdRegistry(strings.Split(f.etcd, ","), f.etcdPrefix, etcdTLS)
		if err != nil {
			return err
		}
		defer closeReg()
		ncfg.Registry = reg
	}
	if s3cfg.Endpoint != "" {
		ncfg.Deleter = &s3Deleter{cfg: s3cfg}
	}
	node, err := coordinator.NewNode(ncfg)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := g.Serve(lis); err != nil {
			log.Error("grpc server", "err", err)
		}
	}()
	defer func() {
		// Unary calls finish; watch streams never end by themselves, so
		// they are cut after a grace period.
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			g.Stop()
			<-done
		}
	}()
	var hsAddr net.Addr
	if f.httpAddr != "" {
		handler, err := httpHandler(f, node, fsm, rn, auth)
		if err != nil {
			return err
		}
		hs := &http.Server{Addr: f.httpAddr, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		hl, err := net.Listen("tcp", f.httpAddr)
		if err != nil {
			return fmt.Errorf("--http-addr: %w", err)
		}
		hsAddr = hl.Addr()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server", "err", err)
			}
		}()
		defer hs.Close()
	}
	if f.join != "" && !rn.Bootstrapped() {
		if err := joinCluster(ctx, f.join, dialOpts, f.id, rn.Addr()); err != nil {
			return err
		}
	}
	httpAddr := ""
	if hsAddr != nil {
		httpAddr = hsAddr.String()
	}
	if ready != nil {
		ready(lis.Addr().String(), httpAddr)
	}
	log.Info("coordinator running", "raft", rn.Addr(), "api", apiAddr, "http", httpAddr, "registry", f.etcd != "", "s3_deletes", s3cfg.Endpoint != "",
		"auth", authSummary(auth))
	node.Run(ctx)
	if rn.IsLeader() {
		if err := rn.TransferLeadership(); err != nil {
			log.Info("leadership transfer on shutdown", "err", err)
		}
	}
	log.Info("coordinator stopping")
	return nil
}

// joinCluster asks a running coordinator to add this node as a voter,
// retrying while the cluster has no leader.
func joinCluster(ctx context.Context, addr string, opts []grpc.DialOption, id, raftAddr string) error {
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return fmt.Errorf("--join %s: %w", addr, err)
	}
	defer cc.Close()
	var last error
	for try := 0; try < 30; try++ {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, last = loompb.NewClusterClient(cc).Join(cctx, &loompb.JoinRequest{NodeId: id, RaftAddr: raftAddr})
		cancel()
		if last == nil {
			return nil
		}
		slog.Warn("joining the cluster", "via", addr, "err", last)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	return fmt.Errorf("--join %s: %w", addr, last)
}

// s3Deleter deletes checkpoint objects named s3://bucket/key.
type s3Deleter struct {
	cfg    shard.S3Config
	mu     sync.Mutex
	stores map[string]*shard.S3Store
}

func (d *s3Deleter) Delete(ctx context.Context, path string) error {
	rest, ok := strings.CutPrefix(path, "s3://")
	if !ok {
		return fmt.Errorf("checkpoint object %q: want s3://bucket/key", path)
	}
	bucket, key, ok := strings.Cut(rest, "/")
	if !ok || key == "" {
		return fmt.Errorf("checkpoint object %q: want s3://bucket/key", path)
	}
	d.mu.Lock()
	st := d.stores[bucket]
	if st == nil {
		cfg := d.cfg
		cfg.Bucket = bucket
		var err error
		if st, err = shard.NewS3Store(cfg); err != nil {
			d.mu.Unlock()
			return err
		}
		if d.stores == nil {
			d.stores = map[string]*shard.S3Store{}
		}
		d.stores[bucket] = st
	}
	d.mu.Unlock()
	return st.Delete(ctx, key)
}

func (f coordinatorFlags) roleCAFile(r coordinator.Role) string {
	if p := f.roleCA[r]; p != nil {
		return *p
	}
	return ""
}

// tokenFiles are the --*token-file flags of the coordinator: one secret
// per role, from a file or the environment, never from argv.
type tokenFiles struct {
	user, worker, node, admin string
}

// tokenEnv is the environment variable of each role's token.
var tokenEnv = map[coordinator.Role]string{
	coordinator.RoleUser: "LOOM_TOKEN", coordinator.RoleWorker: "LOOM_WORKER_TOKEN",
	coordinator.RoleNode: "LOOM_NODE_TOKEN", coordinator.RoleAdmin: "LOOM_ADMIN_TOKEN",
}

func (t *tokenFiles) register(fl *pflag.FlagSet) {
	fl.StringVar(&t.user, "token-file", "", "file holding the users' bearer token (default $LOOM_TOKEN)")
	fl.StringVar(&t.worker, "worker-token-file", "", "file holding the workers' bearer token (default $LOOM_WORKER_TOKEN)")
	fl.StringVar(&t.node, "node-token-file", "", "file holding the coordinator nodes' token, for the API and the Raft transport (default $LOOM_NODE_TOKEN)")
	fl.StringVar(&t.admin, "admin-token-file", "", "file holding the admins' bearer token (default $LOOM_ADMIN_TOKEN)")
}

func (t tokenFiles) file(r coordinator.Role) (flag, path string) {
	switch r {
	case coordinator.RoleUser:
		return "--token-file", t.user
	case coordinator.RoleWorker:
		return "--worker-token-file", t.worker
	case coordinator.RoleNode:
		return "--node-token-file", t.node
	}
	return "--admin-token-file", t.admin
}

// coordinatorAuth builds the API's Auth from the flags and returns the
// node token (for the Raft transport and for calls to other nodes). It
// refuses half-configured authentication: with tokens and no TLS every
// role needs its token, and with either, this node needs node
// credentials.
func coordinatorAuth(f coordinatorFlags) (*coordinator.Auth, string, error) {
	if f.token != "" {
		return nil, "", errors.New("--token is gone: it put the secret on the command line, where ps shows it to every user; put the users' token in a file for --token-file (or LOOM_TOKEN) and give the other roles their own (--worker-token-file, --node-token-file, --admin-token-file)")
	}
	auth := &coordinator.Auth{Tokens: map[coordinator.Role]string{}, Certs: f.tls.Enabled(), RoleCAs: grpcauth.RolePools{}}
	var missing []string
	for _, r := range grpcauth.Roles {
		flag, path := f.tokens.file(r)
		tok, err := grpcauth.ReadSecret(path, tokenEnv[r])
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", flag, err)
		}
		if tok == "" {
			missing = append(missing, fmt.Sprintf("%s (%s or %s)", r, flag, tokenEnv[r]))
			continue
		}
		auth.Tokens[r] = tok
	}
	for _, r := range grpcauth.Roles {
		if p := f.roleCAFile(r); p != "" {
			if !auth.Certs {
				return nil, "", fmt.Errorf("--tls-%s-ca needs mutual TLS (--tls-cert, --tls-key, --tls-ca)", r)
			}
			pool, err := coordinator.LoadCAPool(p)
			if err != nil {
				return nil, "", fmt.Errorf("--tls-%s-ca: %w", r, err)
			}
			auth.RoleCAs[r] = pool
		}
	}
	if err := auth.Check(); err != nil {
		return nil, "", err
	}
	if len(auth.Tokens) > 0 && !auth.Certs && len(missing) > 0 {
		return nil, "", fmt.Errorf("authentication by tokens needs a token for every role; missing: %s", strings.Join(missing, ", "))
	}
	return auth, auth.Tokens[coordinator.RoleNode], nil
}

// checkOwnRole refuses to start a node whose own certificate does not
// prove the node role: the other nodes would refuse it.
func checkOwnRole(c *tls.Config, pools grpcauth.RolePools) error {
	if len(c.Certificates) == 0 || len(c.Certificates[0].Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificates[0].Certificate[0])
	if err != nil {
		return fmt.Errorf("--tls-cert: %w", err)
	}
	var inter []*x509.Certificate
	for _, der := range c.Certificates[0].Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter = append(inter, ic)
		}
	}
	id, err := pools.Verify(leaf, inter)
	if err != nil {
		return fmt.Errorf("--tls-cert: %w", err)
	}
	if id.Role != coordinator.RoleNode {
		return fmt.Errorf("--tls-cert proves role %s; a coordinator's certificate must prove node (%s)", id.Role, grpcauth.RoleURI(grpcauth.Node, ""))
	}
	return nil
}

func authSummary(a *coordinator.Auth) string {
	if a.Open() {
		return "off"
	}
	var parts []string
	if a.Certs {
		parts = append(parts, "mutual TLS")
	}
	if len(a.Tokens) > 0 {
		parts = append(parts, fmt.Sprintf("%d role tokens", len(a.Tokens)))
	}
	return strings.Join(parts, " + ")
}
