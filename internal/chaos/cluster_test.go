package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/devcluster"
	"github.com/loomtrain/loom/internal/grpcauth"
	"github.com/loomtrain/loom/internal/s3server"
	"github.com/loomtrain/loom/shard"
)

// cluster is the suite's system under test, every part a process of its
// own: versitygw behind an S3Proxy, `loom etcd`, three `loom coordinator`
// nodes whose Raft links each go through a Proxy, and workers whose ring
// listeners each sit behind a Proxy.
type cluster struct {
	dir, bin string
	versity  *s3server.Versity
	s3       *S3Proxy
	store    *shard.S3Store // versitygw directly, for the harness's own reads and writes
	etcd     *proc
	etcdURL  string

	coords []*coordinator
	links  [][]*Proxy // links[i][j]: node i dials node j's Raft port through it (nil for i == j)

	mu       sync.Mutex
	workers  []*worker
	leaseTTL time.Duration
	tmpfs    string // "" when every coordinator's data dir is a size-limited tmpfs, else why not
}

type proc struct {
	id      string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) kill() {
	if p.alive() {
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) stop(grace time.Duration) {
	if !p.alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot act on SIGTERM
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
}

type coordinator struct {
	*proc
	i                    int
	raft, api, http, dir string
	args                 []string
}

type worker struct {
	*proc
	i          int
	id         string
	http, ring string
	ringProxy  *Proxy
}

func (c *cluster) spawn(id string, args, env []string) (*proc, error) {
	logPath := filepath.Join(c.dir, "logs", id+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), "LOOM_S3_ACCESS_KEY="+c.versity.AccessKey, "LOOM_S3_SECRET_KEY="+c.versity.SecretKey), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{id: id, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

func httpUp(addr, path string) (string, bool) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + path)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode == 200
}

func waitUp(p *proc, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if !p.alive() {
			return fmt.Errorf("%s exited (log %s)", p.id, p.logPath)
		}
		if _, ok := httpUp(addr, "/healthz"); ok {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer /healthz within %s (log %s)", p.id, within, p.logPath)
}

type clusterOptions struct {
	dir, bin     string
	workers      int
	leaseTTL     time.Duration
	s3Seed       uint64
	tmpfsSize    string // e.g. "64m"
	coordinators int
}

func startCluster(ctx context.Context, o clusterOptions) (c *cluster, err error) {
	c = &cluster{dir: o.dir, bin: o.bin, leaseTTL: o.leaseTTL}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	for _, d := range []string{"logs", "s3", "etcd", "coordinators", "workers"} {
		if err := os.MkdirAll(filepath.Join(o.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if c.versity, err = s3server.StartVersity(filepath.Join(o.dir, "s3")); err != nil {
		return nil, err
	}
	if err := c.versity.CreateBucket(devcluster.Bucket); err != nil {
		return nil, err
	}
	if c.s3, err = NewS3Proxy(c.versity.Endpoint, o.s3Seed); err != nil {
		return nil, err
	}
	if c.store, err = shard.NewS3Store(shard.S3Config{Endpoint: c.versity.Endpoint, Bucket: devcluster.Bucket,
		AccessKey: c.versity.AccessKey, SecretKey: c.versity.SecretKey}); err != nil {
		return nil, err
	}
	// etcd, as `loom etcd`.
	client, err := devcluster.FreeAddr()
	if err != nil {
		return nil, err
	}
	peer, err := devcluster.FreeAddr()
	if err != nil {
		return nil, err
	}
	if c.etcd, err = c.spawn("etcd", []string{"etcd", "--data-dir", filepath.Join(o.dir, "etcd", "data"), "--client-addr", client, "--peer-addr", peer}, nil); err != nil {
		return nil, err
	}
	c.etcdURL = "http://" + client
	if err := waitTCP(c.etcd, client, 30*time.Second); err != nil {
		return nil, err
	}
	// Coordinators: node i reaches node j through links[i][j], so that a
	// partition of node k cuts links[k][*] and links[*][k]. Each node
	// bootstraps with its own view of the peers' addresses.
	n := o.coordinators
	c.coords = make([]*coordinator, n)
	for i := range c.coords {
		co := &coordinator{i: i, dir: filepath.Join(o.dir, "coordinators", fmt.Sprintf("c%d", i))}
		for _, p := range []*string{&co.raft, &co.api, &co.http} {
			if *p, err = devcluster.FreeAddr(); err != nil {
				return nil, err
			}
		}
		if err := os.MkdirAll(co.dir, 0o755); err != nil {
			return nil, err
		}
		c.coords[i] = co
	}
	c.tmpfs = c.mountTmpfs(o.tmpfsSize)
	c.links = make([][]*Proxy, n)
	for i := range c.links {
		c.links[i] = make([]*Proxy, n)
		for j := range c.links[i] {
			if i != j {
				if c.links[i][j], err = NewProxy(c.coords[j].raft); err != nil {
					return nil, err
				}
			}
		}
	}
	for i, co := range c.coords {
		var peers []string
		for j, other := range c.coords {
			addr := other.raft
			if i != j {
				addr = c.links[i][j].Addr()
			}
			peers = append(peers, fmt.Sprintf("c%d=%s", j, addr))
		}
		co.args = []string{"coordinator", "--id", fmt.Sprintf("c%d", i), "--data-dir", co.dir,
			"--raft-addr", co.raft, "--grpc-addr", co.api, "--grpc-advertise", co.api, "--http-addr", co.http, "--peers", strings.Join(peers, ","),
			"--etcd", c.etcdURL, "--tick", "200ms", "--s3-endpoint", c.s3.Endpoint(), "--log-format", "json"}
		if err := c.startCoordinator(co); err != nil {
			return nil, err
		}
	}
	for _, co := range c.coords {
		if err := waitUp(co.proc, co.http, 60*time.Second); err != nil {
			return nil, err
		}
	}
	if _, err := c.leader(60 * time.Second); err != nil {
		return nil, err
	}
	for i := 0; i < o.workers; i++ {
		w := &worker{i: i, id: fmt.Sprintf("w%d", i)}
		c.workers = append(c.workers, w)
		if err := c.startWorker(w); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func waitTCP(p *proc, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if !p.alive() {
			return fmt.Errorf("%s exited (log %s)", p.id, p.logPath)
		}
		if cn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			cn.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not listen on %s within %s", p.id, addr, within)
}

// mountTmpfs puts every coordinator's data dir on a tmpfs of the given
// size, so that filling it is a real ENOSPC under the Raft directory. It
// returns "" on success, else why it could not.
func (c *cluster) mountTmpfs(size string) string {
	if size == "" {
		return "no size given"
	}
	for i, co := range c.coords {
		if err := syscall.Mount("tmpfs", co.dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
			for _, m := range c.coords[:i] {
				syscall.Unmount(m.dir, syscall.MNT_DETACH)
			}
			return fmt.Sprintf("mount -t tmpfs -o size=%s on %s: %v", size, co.dir, err)
		}
	}
	return ""
}

func (c *cluster) startCoordinator(co *coordinator) error {
	p, err := c.spawn(fmt.Sprintf("c%d", co.i), co.args, nil)
	if err != nil {
		return err
	}
	co.proc = p
	return nil
}

// startWorker starts a new incarnation of w: new listen and HTTP ports
// and a new ring proxy (so the coordinator sees a restarted worker).
func (c *cluster) startWorker(w *worker) error {
	for try := 0; ; try++ {
		listen, err := devcluster.FreeAddr()
		if err != nil {
			return err
		}
		httpAddr, err := devcluster.FreeAddr()
		if err != nil {
			return err
		}
		rp, err := NewProxy(listen)
		if err != nil {
			return err
		}
		var apis []string
		for _, co := range c.coords {
			apis = append(apis, co.api)
		}
		args := []string{"worker", "--id", w.id, "--coordinator", strings.Join(apis, ","), "--etcd", c.etcdURL,
			"--listen", listen, "--advertise", rp.Addr(), "--http-addr", httpAddr, "--s3-endpoint", c.s3.Addr(), "--s3-insecure",
			"--s3-bucket", devcluster.Bucket, "--cache-dir", filepath.Join(c.dir, "workers", w.id, "cache"), "--drain-timeout", "30s",
			"--log-format", "json", "--log-level", "debug"}
		p, err := c.spawn(w.id, args, []string{"LOOM_WORKER_LEASE_TTL=" + c.leaseTTL.String()})
		if err != nil {
			rp.Close()
			return err
		}
		if err := waitUp(p, httpAddr, 30*time.Second); err != nil {
			p.kill()
			rp.Close()
			if try < 3 {
				continue // a port taken between FreeAddr and the bind
			}
			return err
		}
		c.mu.Lock()
		if w.ringProxy != nil {
			w.ringProxy.Close()
		}
		w.proc, w.http, w.ring, w.ringProxy = p, httpAddr, listen, rp
		c.mu.Unlock()
		return nil
	}
}

// leader returns the coordinator that leads, once one does.
func (c *cluster) leader(within time.Duration) (*coordinator, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, co := range c.coords {
			if !co.alive() {
				continue
			}
			if body, ok := httpUp(co.http, "/metrics"); ok && strings.Contains(body, "\nloom_coordinator_leader 1") {
				return co, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("no coordinator leads after %s", within)
}

func (c *cluster) dial(co *coordinator) (*grpc.ClientConn, error) {
	return grpc.NewClient(co.api, grpcauth.DialOptions(os.Getenv("LOOM_TOKEN"), nil)...)
}

func (c *cluster) submit(ctx context.Context, m *api.Manifest) error {
	b, err := m.Normalized()
	if err != nil {
		return err
	}
	var last error
	for try := 0; try < 5; try++ {
		co, err := c.leader(30 * time.Second)
		if err != nil {
			return err
		}
		cc, err := c.dial(co)
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, last = loompb.NewJobsClient(cc).SubmitJob(sctx, &loompb.SubmitJobRequest{ManifestYaml: b, File: m.Name + ".yaml"})
		cancel()
		cc.Close()
		if last == nil {
			return nil
		}
		time.Sleep(time.Second)
	}
	return last
}

// job reads the job from every live coordinator at once and returns the
// newest view (highest generation, then step): a partitioned node's
// replica lags, and may not answer at all.
func (c *cluster) job(ctx context.Context, name string) (*loompb.Job, error) {
	type answer struct {
		j   *loompb.Job
		err error
	}
	answers := make(chan answer, len(c.coords))
	n := 0
	for _, co := range c.coords {
		if co.proc == nil || !co.alive() {
			continue
		}
		n++
		go func() {
			cc, err := c.dial(co)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer cc.Close()
			gctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			defer cancel()
			j, err := loompb.NewJobsClient(cc).GetJob(gctx, &loompb.GetJobRequest{Job: name})
			answers <- answer{j, err}
		}()
	}
	var best *loompb.Job
	var errs []error
	for range n {
		a := <-answers
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		j := a.j
		if best == nil || j.Generation > best.Generation || j.Generation == best.Generation && j.Step > best.Step ||
			terminal(j.State) && !terminal(best.State) {
			best = j
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no coordinator answers GetJob(%s): %v", name, errors.Join(errs...))
	}
	return best, nil
}

// jobAt reads the job from one coordinator's replica.
func (c *cluster) jobAt(ctx context.Context, co *coordinator, name string) (*loompb.Job, error) {
	if co.proc == nil || !co.alive() {
		return nil, fmt.Errorf("c%d is not running", co.i)
	}
	cc, err := c.dial(co)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	gctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	return loompb.NewJobsClient(cc).GetJob(gctx, &loompb.GetJobRequest{Job: name})
}

func terminal(state string) bool {
	return state == "succeeded" || state == "failed" || state == "cancelled"
}

// close stops everything and unmounts the tmpfs data dirs.
func (c *cluster) close() {
	c.mu.Lock()
	ws := append([]*worker(nil), c.workers...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		if w.proc != nil {
			wg.Go(func() { w.stop(20 * time.Second) })
		}
	}
	wg.Wait()
	for _, co := range c.coords {
		if co != nil && co.proc != nil {
			wg.Go(func() { co.stop(10 * time.Second) })
		}
	}
	wg.Wait()
	for _, w := range ws {
		if w.ringProxy != nil {
			w.ringProxy.Close()
		}
	}
	for _, row := range c.links {
		for _, p := range row {
			if p != nil {
				p.Close()
			}
		}
	}
	if c.etcd != nil {
		c.etcd.stop(10 * time.Second)
	}
	if c.s3 != nil {
		c.s3.Close()
	}
	if c.versity != nil {
		c.versity.Close()
	}
	if c.tmpfs == "" {
		for _, co := range c.coords {
			if co != nil {
				syscall.Unmount(co.dir, syscall.MNT_DETACH)
			}
		}
	}
}

// fill writes zeros into a file in dir until the file system is full and
// returns the file's path.
func fill(dir string) (string, error) {
	path := filepath.Join(dir, "chaos-fill")
	f, err := os.Create(path)
	if err != nil {
		return path, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	buf := make([]byte, 1<<20)
	for {
		if _, err := w.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return path, nil
			}
			return path, err
		}
	}
}
