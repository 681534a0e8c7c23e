package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/grpctransport"
	"github.com/loomtrain/loom/shard"
)

// Defaults of Config.
const (
	DefaultLeaseTTL          = 10 * time.Second
	DefaultDrainTimeout      = 2 * time.Minute
	DefaultCollectiveTimeout = 30 * time.Second
)

// Config configures an Agent. Info.ID, Info.Addr, Coordinator, Registrar,
// OpenBucket and DefaultBucket are required.
type Config struct {
	// Info is what the worker registers; Info.Addr is where peers dial its
	// collective endpoint.
	Info Info
	// Listen is the address the collective endpoint listens on for each
	// generation (host:port; ":7300" in a pod).
	Listen string
	// Coordinator is the Workers service.
	Coordinator Coordinator
	// Registrar registers the worker; LeaseTTL is its lease (default
	// DefaultLeaseTTL): a killed worker is noticed one TTL later.
	Registrar Registrar
	LeaseTTL  time.Duration
	// OpenBucket returns the object store of one bucket. Checkpoint
	// objects are committed as s3://BUCKET/KEY.
	OpenBucket func(bucket string) (shard.ObjectStore, error)
	// DefaultBucket holds the checkpoints of a job whose manifest sets no
	// checkpoint.uri, under checkpoints/JOB/.
	DefaultBucket string
	// OpenDataset opens one of a manifest's datasets (trainer.Job's field
	// of the same name); nil: s3:// locations through OpenBucket, file://
	// and plain paths as local directories.
	OpenDataset func(ctx context.Context, d api.Dataset) (shard.ObjectStore, string, error)
	// NewTrainer builds a generation's trainer run; nil: NewTrainer.
	NewTrainer NewTrainerFunc
	// Device is where the generations' forward and backward passes run
	// (trainer.Job's field of the same name): "" or "host", "gpu", "gpu:N".
	Device string
	// NewComm connects this rank to its ring peers for one generation
	// (World > 1 only); abort must make every pending and later operation
	// fail at once. nil: GRPCComm on Listen.
	NewComm func(ctx context.Context, a *loompb.Assignment, timeout time.Duration) (comm *collective.Comm, abort func(), err error)
	// CommTLS, when set, turns on mutual TLS between ring peers in the
	// default NewComm (each rank presents Server to the peers that dial it
	// and Client to the peers it dials); ignored when NewComm is set.
	CommTLS *CommTLS
	// CollectiveTimeout bounds how long a collective waits for a silent
	// peer (default DefaultCollectiveTimeout).
	CollectiveTimeout time.Duration
	// DrainTimeout bounds the drain after Run's context ends (default
	// DefaultDrainTimeout).
	DrainTimeout time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Logger; nil: slog.Default().
	Logger *slog.Logger
}

// Agent is one worker process's agent. See the package doc.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	health  health

	mu     sync.Mutex // guards latest
	latest *loompb.Assignment
	notify chan struct{} // a new assignment is in latest (buffer 1)
	fatal  chan error    // the coordinator refuses this worker for good (buffer 1): Run returns it
}

// New checks cfg and returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.Info.ID == "":
		return nil, errors.New("worker: Config.Info.ID (--id) is empty")
	case cfg.Info.Addr == "":
		return nil, errors.New("worker: Config.Info.Addr (--advertise) is empty")
	case cfg.Coordinator == nil:
		return nil, errors.New("worker: Config.Coordinator is nil")
	case cfg.Registrar == nil:
		return nil, errors.New("worker: Config.Registrar is nil")
	case cfg.OpenBucket == nil || cfg.DefaultBucket == "":
		return nil, errors.New("worker: Config.OpenBucket and DefaultBucket (--s3-bucket) are required")
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.CollectiveTimeout == 0 {
		cfg.CollectiveTimeout = DefaultCollectiveTimeout
	}
	if cfg.NewTrainer == nil {
		cfg.NewTrainer = NewTrainer
	}
	if cfg.NewComm == nil {
		listen, tlsConf := cfg.Listen, cfg.CommTLS
		cfg.NewComm = func(ctx context.Context, a *loompb.Assignment, timeout time.Duration) (*collective.Comm, func(), error) {
			return GRPCCommTLS(a, listen, timeout, tlsConf)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OpenDataset == nil {
		open := cfg.OpenBucket
		cfg.OpenDataset = func(ctx context.Context, d api.Dataset) (shard.ObjectStore, string, error) {
			loc, err := shard.ParseLocation(d.URI)
			if err != nil {
				return nil, "", fmt.Errorf("dataset %q: %w", d.Name, err)
			}
			if !loc.S3 {
				s, err := shard.NewFSStore(loc.Dir)
				return s, "", err
			}
			s, err := open(loc.Bucket)
			return s, loc.Prefix, err
		}
	}
	return &Agent{cfg: cfg, log: cfg.Logger.With("worker", cfg.Info.ID), metrics: newMetrics(), notify: make(chan struct{}, 1), fatal: make(chan error, 1)}, nil
}

// Handler serves /healthz, /readyz and /metrics.
func (a *Agent) Handler() http.Handler { return handler(a.metrics, &a.health) }

// CommTLS is the mutual-TLS setup of the ring between workers. Server
// must require and verify client certificates (tls.RequireAndVerifyClientCert
// with ClientCAs); Client presents this worker's certificate and verifies
// the peer's against RootCAs and the host of the peer's advertised address.
type CommTLS struct {
	Server, Client *tls.Config
}

// GRPCComm connects rank a.Rank to its peers over collective/grpctransport,
// listening on listen (the peers dial a.Peers[i].Addr), without TLS.
func GRPCComm(a *loompb.Assignment, listen string, timeout time.Duration) (*collective.Comm, func(), error) {
	return GRPCCommTLS(a, listen, timeout, nil)
}

// GRPCCommTLS is GRPCComm with mutual TLS between the peers when tlsConf
// is non-nil.
func GRPCCommTLS(a *loompb.Assignment, listen string, timeout time.Duration, tlsConf *CommTLS) (*collective.Comm, func(), error) {
	opts := grpctransport.Options{Rank: int(a.Rank)}
	if tlsConf != nil {
		if tlsConf.Server == nil || tlsConf.Client == nil {
			return nil, nil, errors.New("collective TLS: set both the server and the client config")
		}
		opts.ServerTLS, opts.ClientTLS = tlsConf.Server, tlsConf.Client
	}
	addrs := make([]string, len(a.Peers))
	for i, p := range a.Peers {
		addrs[i] = p.Addr
	}
	lis, err := listenRetry(listen, 5*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("collective listen on %s: %w", listen, err)
	}
	opts.Addrs, opts.Listener = addrs, lis
	tr, err := grpctransport.New(opts)
	if err != nil {
		lis.Close()
		return nil, nil, err
	}
	c, err := collective.New(tr, collective.Config{Job: a.Job, Generation: uint64(a.Generation), Timeout: timeout})
	if err != nil {
		tr.Abort()
		return nil, nil, err
	}
	return c, tr.Abort, nil
}

// listenRetry listens on addr, retrying while the previous generation's
// listener is still being released.
func listenRetry(addr string, within time.Duration) (net.Listener, error) {
	deadline := time.Now().Add(within)
	for {
		lis, err := net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return lis, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Run registers the worker, follows its assignments and trains until ctx
// ends; then it drains (see the package doc) and returns nil, or an error
// if the drain did not finish within DrainTimeout.
func (a *Agent) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopBG()

	leaseGone := make(chan struct{})
	wg.Go(func() { defer close(leaseGone); a.keepRegistered(bg) })
	wg.Go(func() { a.watch(bg) })

	var cur Current
	var gen *generation
	stopGen := func(why string) {
		if gen == nil {
			return
		}
		a.log.Info("stopping generation", "job", gen.a.Job, "generation", gen.a.Generation, "why", why)
		gen.stop()
		<-gen.done
		a.metrics.generations.WithLabelValues(gen.end.String()).Inc()
		gen = nil
		a.metrics.generation.Set(0)
	}
	defer stopGen("agent exiting")
	var genDone <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			err := a.drain(gen)
			gen = nil
			stopBG()
			<-leaseGone
			return err
		case err := <-a.fatal:
			a.log.Error("stopping", "err", err)
			stopGen("the coordinator refuses this worker")
			stopBG()
			<-leaseGone
			return err
		case <-genDone:
			a.log.Info("generation ended", "job", gen.a.Job, "generation", gen.a.Generation, "end", gen.end, "err", gen.err)
			a.metrics.generations.WithLabelValues(gen.end.String()).Inc()
			gen, genDone = nil, nil
			a.metrics.generation.Set(0)
		case <-a.notify:
			next := a.take()
			if next == nil {
				continue
			}
			act := Decide(cur, next)
			if act == Keep {
				continue
			}
			if err := CheckAssignment(a.cfg.Info.ID, next); err != nil {
				a.log.Error("refusing assignment", "err", err)
				continue
			}
			a.log.Info("assignment", "action", act, "job", next.Job, "generation", next.Generation, "stage", next.StageName,
				"rank", next.Rank, "world", next.World, "start_step", next.StartStep, "stop_step", next.StopStep)
			if act == Stop || act == Replace {
				stopGen("new assignment")
				genDone = nil
				cur = Current{}
			}
			if act == Start || act == Replace {
				gen = a.startGeneration(bg, next)
				genDone = gen.done
				cur = Current{Job: next.Job, Generation: next.Generation}
				a.metrics.generation.Set(float64(next.Generation))
			}
		}
	}
}

// drain finishes the running generation at a checkpoint (see the package
// doc), bounded by DrainTimeout.
func (a *Agent) drain(gen *generation) error {
	if gen == nil {
		a.log.Info("draining: idle, exiting")
		return nil
	}
	a.log.Info("draining: finishing the step, then checkpointing", "job", gen.a.Job, "generation", gen.a.Generation, "timeout", a.cfg.DrainTimeout)
	gen.requestDrain()
	t := time.NewTimer(a.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-gen.done:
	case <-t.C:
		gen.stop()
		<-gen.done
		return fmt.Errorf("worker %s: drain of job %q generation %d did not finish within %s", a.cfg.Info.ID, gen.a.Job, gen.a.Generation, a.cfg.DrainTimeout)
	}
	a.metrics.generations.WithLabelValues(gen.end.String()).Inc()
	switch gen.end {
	case endDrained, endFinished:
		a.log.Info("drained", "job", gen.a.Job, "step", gen.lastStep, "checkpoint", gen.lastCommitted.Load())
		return nil
	case endStale:
		// The coordinator moved on while we drained: nothing of this
		// generation is wanted any more.
		a.log.Info("drained: the generation was already replaced", "job", gen.a.Job, "generation", gen.a.Generation)
		return nil
	}
	if gen.err != nil {
		return fmt.Errorf("worker %s: drain of job %q generation %d: %w", a.cfg.Info.ID, gen.a.Job, gen.a.Generation, gen.err)
	}
	return nil
}

// keepRegistered holds a registration until ctx ends, registering again
// when the lease is lost.
func (a *Agent) keepRegistered(ctx context.Context) {
	backoff := newBackoff()
	for ctx.Err() == nil {
		lease, err := a.cfg.Registrar.Register(ctx, a.cfg.Info, a.cfg.LeaseTTL)
		if err != nil {
			a.log.Warn("registering", "err", err)
			backoff.wait(ctx)
			continue
		}
		backoff.reset()
		a.health.registered.Store(true)
		a.log.Info("registered", "addr", a.cfg.Info.Addr, "ttl", a.cfg.LeaseTTL)
		select {
		case <-ctx.Done():
			lease.Close()
		case <-lease.Done():
			a.log.Warn("registration lost; registering again", "err", lease.Err())
		}
		a.health.registered.Store(false)
	}
}

// watch follows the assignment stream, reconnecting (to the next
// coordinator address) when it breaks.
func (a *Agent) watch(ctx context.Context) {
	backoff := newBackoff()
	for ctx.Err() == nil {
		s, err := a.cfg.Coordinator.WatchAssignment(ctx, a.cfg.Info.ID)
		if err == nil {
			// A refusal can also come as the stream's first message.
			var as *loompb.Assignment
			if as, err = s.Recv(); err == nil {
				a.health.connected.Store(true)
				backoff.reset()
				a.put(as)
			}
		}
		if err != nil {
			if refused(err) {
				a.refuse(err)
				return
			}
			if ctx.Err() == nil {
				a.log.Warn("opening the assignment stream", "err", err)
			}
			backoff.wait(ctx)
			continue
		}
		for {
			as, err := s.Recv()
			if err != nil && refused(err) {
				a.health.connected.Store(false)
				a.refuse(err)
				return
			}
			if err != nil {
				a.health.connected.Store(false)
				if ctx.Err() == nil {
					a.log.Warn("assignment stream broke; reconnecting", "err", err)
				}
				break
			}
			a.health.connected.Store(true)
			backoff.reset()
			a.put(as)
		}
		backoff.wait(ctx)
	}
}

// refuse hands Run the coordinator's refusal of this worker, which ends it.
func (a *Agent) refuse(err error) {
	a.fatal <- fmt.Errorf("worker %s: the coordinator refuses this worker's credentials: %w (the worker's bearer token, --worker-token-file or $LOOM_WORKER_TOKEN, or its certificate must be one the coordinators accept for the worker role)", a.cfg.Info.ID, err)
}

// refused reports whether err is the coordinator refusing the worker's
// identity or role: no retry can succeed without a new credential, so
// the worker stops instead of retrying forever.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	}
	return false
}

// put makes as the latest assignment and wakes Run.
func (a *Agent) put(as *loompb.Assignment) {
	a.mu.Lock()
	a.latest = as
	a.mu.Unlock()
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

func (a *Agent) take() *loompb.Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	as := a.latest
	a.latest = nil
	return as
}

type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 100 * time.Millisecond} }

func (b *backoff) reset() { b.d = 100 * time.Millisecond }

func (b *backoff) wait(ctx context.Context) {
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b.d = min(2*b.d, 3*time.Second)
}
