package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/coordinator/registry"
	"github.com/loomtrain/loom/internal/buildinfo"
	"github.com/loomtrain/loom/internal/grpcauth"
	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/worker"
)

func init() { rootCmd.AddCommand(newWorkerCmd()) }

// workerFlags are the flags of `loom worker`. Their names are a fixed
// contract: deploy/k8s passes exactly these.
type workerFlags struct {
	id, coordinator, etcd, etcdPrefix string
	listen, advertise, httpAddr       string
	s3                                s3Flags
	s3Bucket                          string
	tls, etcdTLS                      coordinator.TLSFiles
	cacheDir                          string
	tokenFile                         string
	gpus                              int
	device                            string
	drainTimeout                      time.Duration
}

func newWorkerCmd() *cobra.Command {
	var f workerFlags
	c := &cobra.Command{
		Use:   "worker",
		Short: "Run a training worker (registers in etcd, trains what the coordinator assigns)",
		Long: `Runs the worker agent of one machine. It registers in etcd (--etcd, under
--etcd-prefix) with a lease, follows the assignment the coordinator gives it
(any of the --coordinator addresses; it fails over between them), and for each
generation of a job: connects to its ring peers (it listens on --listen, peers
dial --advertise), restores the last committed checkpoint, reads its slice of
the data from S3, trains, reports progress every step, and writes checkpoints
to S3 (--s3-bucket, or the manifest's checkpoint.uri) that the coordinator
commits.

SIGTERM (or Ctrl-C) drains: the current step finishes, every rank of the ring
stops at that step, rank 0 writes and commits a checkpoint, and the worker
exits 0 within --drain-timeout.

/healthz, /readyz (registered and connected to a coordinator) and /metrics
(Prometheus: step time, tokens/s, loss, samples consumed, checkpoint times) are
served on --http-addr.

--tls-cert, --tls-key and --tls-ca turn on mutual TLS to the coordinator
(started with the same flags) and between the workers of a ring: the worker
presents its certificate to both, checks theirs against the CA, and its
certificate must prove the worker role (URI SAN spiffe://loom/role/worker, or
.../worker/ID to bind it to --id) and name the host of --advertise. The
coordinator must prove the node role, ring peers the worker role.
--etcd-tls-* do the same for the connection to etcd.

Environment: LOOM_S3_ACCESS_KEY and LOOM_S3_SECRET_KEY (or AWS_ACCESS_KEY_ID
and AWS_SECRET_ACCESS_KEY) are the S3 credentials; prefer them to the flags,
which show in ps. The workers' bearer token comes from --worker-token-file or
LOOM_WORKER_TOKEN (never from the command line).
LOOM_COORDINATOR, LOOM_ETCD_ENDPOINTS, LOOM_S3_ENDPOINT, LOOM_S3_REGION and
LOOM_S3_BUCKET are the defaults of the flags of the same meaning. A host:port
S3 endpoint means HTTPS unless --s3-insecure is set. LOOM_WORKER_LEASE_TTL
(default 10s) is how soon a killed worker is noticed.

Example:
  LOOM_S3_ACCESS_KEY=... LOOM_S3_SECRET_KEY=... loom worker --id w0 \
      --coordinator 10.0.0.1:7001,10.0.0.2:7001 --etcd http://10.0.0.1:2379 \
      --listen :7300 --advertise w0.workers.loom.svc:7300 \
      --s3-endpoint minio.loom.svc:9000 --s3-insecure --s3-bucket loom`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runWorker(ctx, f)
		},
	}
	host, _ := os.Hostname()
	fl := c.Flags()
	fl.StringVar(&f.id, "id", host, "worker id (default: the hostname; a StatefulSet pod name is stable)")
	fl.StringVar(&f.coordinator, "coordinator", os.Getenv("LOOM_COORDINATOR"), "coordinator gRPC address(es), comma-separated host:port (env LOOM_COORDINATOR)")
	fl.StringVar(&f.etcd, "etcd", os.Getenv("LOOM_ETCD_ENDPOINTS"), "etcd client endpoints, comma-separated (env LOOM_ETCD_ENDPOINTS)")
	fl.StringVar(&f.etcdPrefix, "etcd-prefix", "/loom/workers", "registry prefix")
	fl.StringVar(&f.listen, "listen", ":7300", "collective gRPC listen address")
	fl.StringVar(&f.advertise, "advertise", "", "host:port peers dial (default: hostname + listen port; in k8s the pod DNS name)")
	fl.StringVar(&f.httpAddr, "http-addr", ":7301", "serves /healthz, /readyz, /metrics")
	f.s3.register(fl, "S3 endpoint of the datasets and checkpoints")
	fl.StringVar(&f.s3Bucket, "s3-bucket", os.Getenv("LOOM_S3_BUCKET"), "bucket for checkpoints of jobs whose manifest names none (env LOOM_S3_BUCKET)")
	fl.StringVar(&f.tls.Cert, "tls-cert", "", "PEM certificate of this worker (mutual TLS to the coordinator and between ring peers)")
	fl.StringVar(&f.tls.Key, "tls-key", "", "PEM private key of --tls-cert")
	fl.StringVar(&f.tls.CA, "tls-ca", "", "PEM CA that signs the coordinator's and the other workers' certificates")
	fl.StringVar(&f.etcdTLS.Cert, "etcd-tls-cert", "", "PEM client certificate for etcd (mutual TLS to the registry)")
	fl.StringVar(&f.etcdTLS.Key, "etcd-tls-key", "", "PEM private key of --etcd-tls-cert")
	fl.StringVar(&f.etcdTLS.CA, "etcd-tls-ca", "", "PEM CA that signed etcd's server certificate")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "local cache for shards (default: a temp dir)")
	fl.StringVar(&f.tokenFile, "worker-token-file", "", "file holding the workers' bearer token for the coordinator (default $LOOM_WORKER_TOKEN)")
	fl.IntVar(&f.gpus, "gpus", 0, "GPUs this worker offers (default 0 = CPU)")
	fl.StringVar(&f.device, "device", "host", "where forward and backward run: host (the CPU), gpu or gpu:N (Vulkan; loom version lists the devices)")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", 2*time.Minute, "time allowed for the drain checkpoint on SIGTERM")
	return c
}

// advertiseAddr is --advertise, or the hostname with the --listen port.
func advertiseAddr(f workerFlags) (string, error) {
	if f.advertise != "" {
		if _, _, err := net.SplitHostPort(f.advertise); err != nil {
			return "", fmt.Errorf("--advertise %q: %v", f.advertise, err)
		}
		return f.advertise, nil
	}
	host, port, err := net.SplitHostPort(f.listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %v", f.listen, err)
	}
	if port == "0" {
		return "", fmt.Errorf("--listen %q: peers need a fixed port", f.listen)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("--advertise: no hostname: %v", err)
		}
	}
	return net.JoinHostPort(host, port), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// workerTLS builds the TLS configurations of a worker from its flags: to
// the coordinator, between ring peers, and to etcd; nil where the flags
// leave TLS off.
func workerTLS(f workerFlags) (coord *tls.Config, comm *worker.CommTLS, etcd *tls.Config, err error) {
	if f.tls.Enabled() {
		// Ring peers are workers: each end checks the other's role.
		peer, err := f.tls.ClientConfig()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--tls-*: %w", err)
		}
		peer.VerifyConnection = grpcauth.RequireRole(nil, grpcauth.Worker)
		srv, err := f.tls.ServerConfig()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--tls-*: %w", err)
		}
		srv.VerifyConnection = grpcauth.RequireRole(nil, grpcauth.Worker)
		comm = &worker.CommTLS{Server: srv, Client: peer}
		if coord, err = f.tls.CoordinatorClientConfig(nil); err != nil {
			return nil, nil, nil, fmt.Errorf("--tls-*: %w", err)
		}
	}
	if f.etcdTLS.Enabled() {
		if etcd, err = f.etcdTLS.ClientConfig(); err != nil {
			return nil, nil, nil, fmt.Errorf("--etcd-tls-*: %w", err)
		}
	}
	return coord, comm, etcd, nil
}

// etcdRegistrar adapts coordinator/registry to worker.Registrar.
type etcdRegistrar struct {
	cli    *clientv3.Client
	prefix string
}

func (r etcdRegistrar) Register(ctx context.Context, w worker.Info, ttl time.Duration) (worker.Lease, error) {
	return registry.Register(ctx, r.cli, r.prefix, registry.Worker{ID: w.ID, Addr: w.Addr, Host: w.Host, GPUs: w.GPUs, Labels: w.Labels, Version: w.Version}, ttl)
}

// bucketStores opens one S3Store per bucket, wrapping the dataset ones in
// the disk cache.
type bucketStores struct {
	cfg    shard.S3Config
	mu     sync.Mutex
	stores map[string]shard.ObjectStore
}

func (b *bucketStores) open(bucket string) (shard.ObjectStore, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.stores[bucket]; s != nil {
		return s, nil
	}
	cfg := b.cfg
	cfg.Bucket = bucket
	s, err := shard.NewS3Store(cfg)
	if err != nil {
		return nil, err
	}
	b.stores[bucket] = s
	return s, nil
}

func runWorker(ctx context.Context, f workerFlags) error {
	log := slog.Default().With("worker", f.id)
	switch {
	case f.id == "":
		return errors.New("--id is empty and the hostname is unknown")
	case f.coordinator == "":
		return errors.New("--coordinator is required (or LOOM_COORDINATOR)")
	case f.etcd == "":
		return errors.New("--etcd is required (or LOOM_ETCD_ENDPOINTS)")
	case f.s3Bucket == "":
		return errors.New("--s3-bucket is required (or LOOM_S3_BUCKET)")
	}
	dev, err := kernels.OpenDevice(f.device) // fail before registering, naming the device
	if err != nil {
		return fmt.Errorf("--device: %w", err)
	}
	log.Info("compute device", "device", dev.String())
	s3cfg, err := f.s3.config()
	if err != nil {
		return err
	}
	if s3cfg.Endpoint == "" {
		return errors.New("--s3-endpoint is required (or LOOM_S3_ENDPOINT)")
	}
	coordTLS, commTLS, etcdTLS, err := workerTLS(f)
	if err != nil {
		return err
	}
	adv, err := advertiseAddr(f)
	if err != nil {
		return err
	}
	ttl := worker.DefaultLeaseTTL
	if v := os.Getenv("LOOM_WORKER_LEASE_TTL"); v != "" {
		if ttl, err = time.ParseDuration(v); err != nil {
			return fmt.Errorf("LOOM_WORKER_LEASE_TTL %q: %v", v, err)
		}
	}
	cacheDir := f.cacheDir
	if cacheDir == "" {
		if cacheDir, err = os.MkdirTemp("", "loom-worker-cache-"); err != nil {
			return err
		}
		defer os.RemoveAll(cacheDir)
	}
	stores := &bucketStores{stores: map[string]shard.ObjectStore{}, cfg: s3cfg}
	cli, err := clientv3.New(clientv3.Config{Endpoints: splitList(f.etcd), DialTimeout: 5 * time.Second, TLS: etcdTLS})
	if err != nil {
		return fmt.Errorf("--etcd %s: %w", f.etcd, err)
	}
	defer cli.Close()
	token, err := grpcauth.ReadSecret(f.tokenFile, "LOOM_WORKER_TOKEN")
	if err != nil {
		return fmt.Errorf("--worker-token-file: %w", err)
	}
	coord, err := worker.NewGRPCCoordinator(splitList(f.coordinator), worker.DialOptions(token, coordTLS)...)
	if err != nil {
		return err
	}
	defer coord.Close()
	host, _ := os.Hostname()
	var cacheMu sync.Mutex
	caches := map[string]shard.ObjectStore{}
	ag, err := worker.New(worker.Config{
		Info:   worker.Info{ID: f.id, Addr: adv, Host: host, GPUs: f.gpus, Version: buildinfo.Read().Version},
		Listen: f.listen, Coordinator: coord, Registrar: etcdRegistrar{cli: cli, prefix: f.etcdPrefix}, LeaseTTL: ttl,
		OpenBucket: stores.open, DefaultBucket: f.s3Bucket, DrainTimeout: f.drainTimeout, CommTLS: commTLS, Device: f.device,
		OpenDataset: func(ctx context.Context, d api.Dataset) (shard.ObjectStore, string, error) {
			loc, err := shard.ParseLocation(d.URI)
			if err != nil {
				return nil, "", fmt.Errorf("dataset %q: %w", d.Name, err)
			}
			if !loc.S3 {
				s, err := shard.NewFSStore(loc.Dir)
				return s, "", err
			}
			cacheMu.Lock()
			defer cacheMu.Unlock()
			if s := caches[loc.Bucket]; s != nil {
				return s, loc.Prefix, nil
			}
			s, err := stores.open(loc.Bucket)
			if err != nil {
				return nil, "", err
			}
			c, err := worker.NewDiskCache(s, cacheDir+"/"+loc.Bucket)
			if err != nil {
				return nil, "", err
			}
			caches[loc.Bucket] = c
			return c, loc.Prefix, nil
		},
		Logger: slog.Default(),
	})
	if err != nil {
		return err
	}
	var hs *http.Server
	var wg sync.WaitGroup
	if f.httpAddr != "" {
		hl, err := net.Listen("tcp", f.httpAddr)
		if err != nil {
			return fmt.Errorf("--http-addr: %w", err)
		}
		hs = &http.Server{Handler: ag.Handler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server", "err", err)
			}
		})
	}
	log.Info("worker starting", "coordinator", f.coordinator, "advertise", adv, "listen", f.listen, "http", f.httpAddr,
		"s3", s3cfg.Endpoint, "bucket", f.s3Bucket, "cache", cacheDir, "gpus", f.gpus, "lease_ttl", ttl)
	err = ag.Run(ctx)
	if hs != nil {
		hs.Close()
	}
	wg.Wait()
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	log.Info("worker stopped")
	return nil
}
