package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/etcdserver"
	"github.com/loomtrain/loom/internal/grpcauth"
	"github.com/loomtrain/loom/internal/s3server"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
	"github.com/loomtrain/loom/trainer"
)

// Bucket holds the dev cluster's datasets and checkpoints.
const Bucket = "loom"

// Cluster is the whole system on one machine: etcd and S3 embedded in
// this process, coordinator nodes and workers as child processes of the
// loom binary. `loom dev` and the end-to-end tests use it.
type Cluster struct {
	dir   string
	bin   string
	log   *slog.Logger
	etcd  *etcdserver.Server
	s3    *s3server.Server
	store *shard.S3Store

	mu       sync.Mutex
	coords   []*Proc
	workers  []*Proc
	peers    string // --peers of the coordinators
	apis     []string
	leaseTTL time.Duration
}

// Proc is a child process of the cluster. ExitErr and ExitCode are set
// once Done is closed.
type Proc struct {
	ID       string
	Cmd      *exec.Cmd
	LogPath  string
	HTTP     string // /healthz /readyz /metrics
	API      string // coordinators: gRPC address
	Done     chan struct{}
	ExitErr  error
	ExitCode int
}

// Options configure Start.
type Options struct {
	Dir          string // everything goes under it (created)
	Bin          string // the loom binary to run children with
	Coordinators int
	LeaseTTL     time.Duration // workers' registry lease (how soon a kill is noticed)
	Logger       *slog.Logger
}

// FreeAddr returns a 127.0.0.1 address whose port is free right now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start starts etcd and S3 in this process and o.Coordinators coordinator
// processes, and returns once one of them leads. Workers are started
// with StartWorker.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	if o.Coordinators == 0 {
		o.Coordinators = 1
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c = &Cluster{dir: o.Dir, bin: o.Bin, log: o.Logger, leaseTTL: o.LeaseTTL}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for _, d := range []string{"etcd", "s3", "logs", "coordinators", "workers"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if c.etcd, err = etcdserver.StartWithOptions(filepath.Join(o.Dir, "etcd"), etcdserver.Options{NoFsync: true, Logger: o.Logger}); err != nil {
		return nil, err
	}
	if c.s3, err = s3server.Start(filepath.Join(o.Dir, "s3")); err != nil {
		return nil, err
	}
	if err := c.s3.CreateBucket(Bucket); err != nil {
		return nil, err
	}
	if c.store, err = shard.NewS3Store(shard.S3Config{Endpoint: c.s3.Endpoint, Bucket: Bucket, AccessKey: c.s3.AccessKey, SecretKey: c.s3.SecretKey}); err != nil {
		return nil, err
	}
	// Coordinators: a fixed voter set, bootstrapped together.
	type addrs struct{ raft, api, http string }
	as := make([]addrs, o.Coordinators)
	var peers []string
	for i := range as {
		for _, p := range []*string{&as[i].raft, &as[i].api, &as[i].http} {
			if *p, err = FreeAddr(); err != nil {
				return nil, err
			}
		}
		peers = append(peers, fmt.Sprintf("c%d=%s", i, as[i].raft))
		c.apis = append(c.apis, as[i].api)
	}
	c.peers = strings.Join(peers, ",")
	start := func(i int) (*Proc, error) {
		a := as[i]
		id := fmt.Sprintf("c%d", i)
		args := []string{"coordinator", "--id", id, "--data-dir", filepath.Join(o.Dir, "coordinators", id),
			"--raft-addr", a.raft, "--grpc-addr", a.api, "--http-addr", a.http, "--peers", c.peers,
			"--etcd", strings.Join(c.etcd.Endpoints, ","), "--tick", "200ms", "--s3-endpoint", c.s3.Endpoint,
			"--worker-logs", filepath.Join(o.Dir, "logs"), "--log-format", "json"}
		p, err := c.spawn(id, args, nil)
		if err != nil {
			return nil, err
		}
		p.HTTP, p.API = a.http, a.api
		return p, nil
	}
	for i := range as {
		p, err := start(i)
		if err != nil {
			return nil, err
		}
		c.coords = append(c.coords, p)
	}
	// Every coordinator must come up. A port FreeAddr picked may be taken
	// by another process before the child binds it (tests run in
	// parallel); that child exits at once, and starts again on new API and
	// HTTP ports (its Raft port is in every peer list and stays).
	for i := range as {
		for try := 0; !c.procUp(c.coords[i], 30*time.Second); try++ {
			if try == 3 {
				return nil, fmt.Errorf("coordinator c%d did not come up (log %s)", i, c.coords[i].LogPath)
			}
			for _, p := range []*string{&as[i].api, &as[i].http} {
				if *p, err = FreeAddr(); err != nil {
					return nil, err
				}
			}
			c.apis[i] = as[i].api
			p, err := start(i)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			c.coords[i] = p
			c.mu.Unlock()
		}
	}
	if _, err := c.WaitLeader(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

// spawn starts `loom ARGS...` with its output in logs/ID.log.
func (c *Cluster) spawn(id string, args, env []string) (*Proc, error) {
	logPath := filepath.Join(c.dir, "logs", id+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), "LOOM_S3_ACCESS_KEY="+c.s3.AccessKey, "LOOM_S3_SECRET_KEY="+c.s3.SecretKey), env...)
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	p := &Proc{ID: id, Cmd: cmd, LogPath: logPath, Done: make(chan struct{})}
	go func() {
		p.ExitErr = cmd.Wait()
		p.ExitCode = cmd.ProcessState.ExitCode()
		f.Close()
		close(p.Done)
	}()
	return p, nil
}

// StartWorker starts worker process ID. Like a coordinator, a worker whose
// port another process took before it bound (FreeAddr picks, the child
// binds later) exits at once; it is started again on new ports.
func (c *Cluster) StartWorker(id string) (*Proc, error) { return c.StartWorkerArgs(id) }

// StartWorkerArgs is StartWorker with extra flags for `loom worker` (for
// example --device gpu).
func (c *Cluster) StartWorkerArgs(id string, extra ...string) (*Proc, error) {
	for try := 0; ; try++ {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		httpAddr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		args := []string{"worker", "--id", id, "--coordinator", strings.Join(c.apis, ","), "--etcd", strings.Join(c.etcd.Endpoints, ","),
			"--listen", addr, "--advertise", addr, "--http-addr", httpAddr, "--s3-endpoint", c.s3.Addr(), "--s3-insecure",
			"--s3-bucket", Bucket, "--cache-dir", filepath.Join(c.dir, "workers", id, "cache"), "--drain-timeout", "60s",
			"--log-format", "json", "--log-level", "debug"}
		args = append(args, extra...)
		p, err := c.spawn(id, args, []string{"LOOM_WORKER_LEASE_TTL=" + c.leaseTTL.String()})
		if err != nil {
			return nil, err
		}
		p.HTTP = httpAddr
		if !c.procUp(p, 30*time.Second) && try < 3 {
			continue
		}
		c.mu.Lock()
		c.workers = append(c.workers, p)
		c.mu.Unlock()
		return p, nil
	}
}

// procUp waits until a child answers /healthz on its HTTP address, and
// reports false when it exited first (or did not answer within, when it
// is killed).
func (c *Cluster) procUp(p *Proc, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-p.Done:
			return false
		default:
		}
		if _, code := httpGet(p.HTTP + "/healthz"); code == 200 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Stop(syscall.SIGKILL, time.Second)
	return false
}

// WaitLeader returns the coordinator process that leads, once one does.
func (c *Cluster) WaitLeader(ctx context.Context, within time.Duration) (*Proc, error) {
	deadline := time.Now().Add(within)
	for {
		for _, p := range c.coords {
			select {
			case <-p.Done:
				continue
			default:
			}
			body, code := httpGet(p.HTTP + "/metrics")
			if code == 200 && strings.Contains(body, "\nloom_coordinator_leader 1") {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no coordinator leads after %s (logs in %s)", within, filepath.Join(c.dir, "logs"))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func httpGet(addr string) (string, int) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr)
	if err != nil {
		return "", 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

// Dial connects to the coordinators (any of them answers).
func (c *Cluster) Dial() (*grpc.ClientConn, error) {
	var live []string
	for _, p := range c.coords {
		select {
		case <-p.Done:
		default:
			live = append(live, p.API)
		}
	}
	return grpc.NewClient(live[0], grpcauth.DialOptions(os.Getenv("LOOM_TOKEN"), nil)...)
}

// WriteData generates the synthetic datasets a recipe reads into the
// bucket, n samples each, under datasets/KIND, and returns their URIs.
func (c *Cluster) WriteData(ctx context.Context, recipe string, n int, extra ...shard.Kind) (func(shard.Kind) string, error) {
	r, err := trainer.Lookup(recipe)
	if err != nil {
		return nil, err
	}
	kinds := r.Kinds()
	for _, k := range extra {
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	return c.WriteSynth(ctx, kinds, n)
}

// DataPrefix is where Ingest puts a local dataset in the bucket.
const DataPrefix = "datasets/data"

// Ingest converts a local dataset (an image folder with a caption JSONL,
// LLaVA JSON, WebDataset tars, or text; shard.Ingest detects which) into
// shards under DataPrefix, once: a kept data dir that has it already
// reads it again. It returns the dataset's URI and kind.
func (c *Cluster) Ingest(ctx context.Context, src string, out io.Writer) (string, shard.Kind, error) {
	uri := "s3://" + Bucket + "/" + DataPrefix
	if r, err := shard.OpenReader(ctx, c.store, DataPrefix, shard.ReaderOptions{}); err == nil {
		k := r.Index().Kind
		r.Close()
		fmt.Fprintf(out, "  data         %s: ingested before in this data dir (%s); not again\n", uri, k)
		return uri, k, nil
	}
	st, err := shard.Ingest(ctx, src, c.store, DataPrefix, shard.IngestOptions{Writer: shard.WriterOptions{TempDir: filepath.Join(c.dir, "s3")}})
	if err != nil {
		return "", "", fmt.Errorf("--data %s: %w", src, err)
	}
	fmt.Fprintf(out, "  data         %s: %d %s rows from %s (%s format)\n", uri, st.Rows, st.Kind, src, st.Format)
	if len(st.MetaFields) > 0 {
		fmt.Fprintf(out, "               kept fields %s of the input in each row's meta\n", strings.Join(st.MetaFields, ", "))
	}
	return uri, st.Kind, nil
}

// WriteSynth writes n synthetic samples of each kind into the bucket under
// datasets/KIND (once: a kind written before is kept) and returns their
// URIs.
func (c *Cluster) WriteSynth(ctx context.Context, kinds []shard.Kind, n int) (func(shard.Kind) string, error) {
	for _, k := range kinds {
		prefix := "datasets/" + string(k)
		if _, err := c.store.Stat(ctx, shard.JoinKey(prefix, "index.json")); err == nil {
			continue // written by an earlier job
		}
		// Text documents include scene descriptions, so that an LLM
		// pretrained on them knows the captions' words.
		if _, err := synth.WriteWith(ctx, c.store, prefix, k, n, 7, synth.Options{SceneText: true}, shard.WriterOptions{Kind: k, ShardBytes: 256 << 10, TempDir: filepath.Join(c.dir, "s3")}); err != nil {
			return nil, fmt.Errorf("generating %s data: %w", k, err)
		}
	}
	return func(k shard.Kind) string { return "s3://" + Bucket + "/datasets/" + string(k) }, nil
}

// Submit submits m and returns the job as accepted.
func (c *Cluster) Submit(ctx context.Context, m *api.Manifest) (*loompb.Job, error) {
	b, err := m.Normalized()
	if err != nil {
		return nil, err
	}
	cc, err := c.Dial()
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return loompb.NewJobsClient(cc).SubmitJob(sctx, &loompb.SubmitJobRequest{ManifestYaml: b, File: m.Name + ".yaml"})
}

// Resume makes a failed or cancelled job run again from its last
// committed checkpoint.
func (c *Cluster) Resume(ctx context.Context, name string) (*loompb.Job, error) {
	cc, err := c.Dial()
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return loompb.NewJobsClient(cc).ResumeJob(rctx, &loompb.ResumeJobRequest{Job: name})
}

// GetJob reads a job from any live coordinator.
func (c *Cluster) GetJob(ctx context.Context, name string) (*loompb.Job, error) {
	cc, err := c.Dial()
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return loompb.NewJobsClient(cc).GetJob(gctx, &loompb.GetJobRequest{Job: name})
}

// Stop sends sig, then SIGKILL after grace.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) {
	select {
	case <-p.Done:
		return
	default:
	}
	p.Cmd.Process.Signal(sig)
	select {
	case <-p.Done:
	case <-time.After(grace):
		p.Cmd.Process.Kill()
		<-p.Done
	}
}

// Dir is the directory everything lives under.
func (c *Cluster) Dir() string { return c.dir }

// LogDir is where every process's log goes (ID.log).
func (c *Cluster) LogDir() string { return filepath.Join(c.dir, "logs") }

// Store is the cluster's bucket, as the trainer reads it.
func (c *Cluster) Store() *shard.S3Store { return c.store }

// S3 is the embedded S3 server.
func (c *Cluster) S3() *s3server.Server { return c.s3 }

// Etcd is the embedded etcd server.
func (c *Cluster) Etcd() *etcdserver.Server { return c.etcd }

// APIs are the coordinators' gRPC addresses, in node order.
func (c *Cluster) APIs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.apis...)
}

// Coordinators are the coordinator processes, in node order.
func (c *Cluster) Coordinators() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Proc(nil), c.coords...)
}

// Workers are the worker processes started so far, exited ones included.
func (c *Cluster) Workers() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Proc(nil), c.workers...)
}

// Close stops every process (workers drain first), then S3 and etcd.
func (c *Cluster) Close() error {
	c.mu.Lock()
	ws := append([]*Proc(nil), c.workers...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ws {
		wg.Go(func() { p.Stop(syscall.SIGTERM, 70*time.Second) })
	}
	wg.Wait()
	for _, p := range c.coords {
		wg.Go(func() { p.Stop(syscall.SIGTERM, 15*time.Second) })
	}
	wg.Wait()
	var errs []error
	if c.s3 != nil {
		errs = append(errs, c.s3.Close())
	}
	if c.etcd != nil {
		errs = append(errs, c.etcd.Close())
	}
	return errors.Join(errs...)
}
