package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/status"
)

// Registry is what the leader needs from the worker registry
// (coordinator/registry over etcd, or a fake in tests).
type Registry interface {
	// Watch returns the workers registered now, then their changes until
	// ctx ends; the channel is closed when the watch stops.
	Watch(ctx context.Context) ([]WorkerInfo, <-chan RegistryEvent, error)
}

// RegistryEvent is a worker registering (Up) or its registration ending.
type RegistryEvent struct {
	Up     bool
	Worker WorkerInfo
}

// ObjectDeleter deletes checkpoint objects from the object store. Deleting
// an object that does not exist is not an error.
type ObjectDeleter interface {
	Delete(ctx context.Context, path string) error
}

// NodeConfig configures a coordinator node.
type NodeConfig struct {
	ID string
	// APIAddr is the gRPC address other nodes use to reach this one; it is
	// recorded in the replicated state for write forwarding.
	APIAddr string
	Raft    Raft
	FSM     *FSM
	Server  *Server
	// Registry feeds worker liveness to the leader; nil: none.
	Registry Registry
	// Deleter removes retired checkpoints; nil: they stay listed as garbage.
	Deleter ObjectDeleter
	// Tick is the scheduler period. Default 1s.
	Tick time.Duration
	// BarrierTimeout bounds the barrier a new leader runs before its
	// duties. Default 30s.
	BarrierTimeout time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
}

// Node runs one coordinator: the API server's batcher, the registration of
// its API address, and, while it leads, the leader duties (registry watch,
// scheduler, checkpoint deletion), started only after a Raft barrier so
// that they see every committed entry.
type Node struct {
	cfg NodeConfig
	log *slog.Logger

	mu      sync.Mutex
	leading bool // duties running (after the barrier)

	// leaderChanges counts the changes of the leader this node saw (a
	// known leader's ID differing from the last known one, the first
	// one included); leaderLoop alone writes it.
	leaderChanges atomic.Int64
	lastLeader    string // leaderLoop's own
}

// NewNode checks cfg and returns a node; Run starts it.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.ID == "" || cfg.Raft == nil || cfg.FSM == nil || cfg.Server == nil {
		return nil, errors.New("coordinator node: ID, Raft, FSM and Server are required")
	}
	if cfg.Tick == 0 {
		cfg.Tick = time.Second
	}
	if cfg.BarrierTimeout == 0 {
		cfg.BarrierTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.ID)}, nil
}

// Leading reports whether this node runs the leader duties.
func (n *Node) Leading() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leading
}

// Run blocks until ctx ends, then returns once every goroutine it started
// has stopped.
func (n *Node) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); n.cfg.Server.Run(ctx) }()
	go func() { defer wg.Done(); n.registerSelf(ctx) }()
	n.leaderLoop(ctx)
	wg.Wait()
}

// registerSelf records this node's API address in the state (through the
// leader) until it is there.
func (n *Node) registerSelf(ctx context.Context) {
	if n.cfg.APIAddr == "" {
		return
	}
	for {
		var have string
		n.cfg.FSM.Read(func(s *State) { have = s.Nodes[n.cfg.ID] })
		if have == n.cfg.APIAddr {
			select {
			case <-ctx.Done():
				return
			case <-n.cfg.FSM.Changed(): // a restore could drop it
			}
			continue
		}
		_, err := n.cfg.Server.Apply(ctx, &Command{RegisterNode: &RegisterNode{NodeID: n.cfg.ID, APIAddr: n.cfg.APIAddr}})
		if err != nil {
			n.log.Debug("registering API address", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// leaderLoop starts the duties when this node becomes leader and stops them
// when it is not. LeaderCh may drop transitions, so IsLeader is polled too.
func (n *Node) leaderLoop(ctx context.Context) {
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	type running struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var cur *running
	stop := func() {
		if cur != nil {
			cur.cancel()
			<-cur.done
			cur = nil
		}
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.cfg.Raft.LeaderCh():
		case <-poll.C:
		}
		if cur != nil {
			select {
			case <-cur.done: // duties gave up (the barrier failed): try again
				cur.cancel()
				cur = nil
			default:
			}
		}
		n.noteLeader()
		leader := n.cfg.Raft.IsLeader()
		switch {
		case leader && cur == nil:
			dctx, cancel := context.WithCancel(ctx)
			r := &running{cancel: cancel, done: make(chan struct{})}
			go func() { defer close(r.done); n.duties(dctx) }()
			cur = r
		case !leader && cur != nil:
			n.log.Info("lost leadership; leader duties stop")
			stop()
		}
	}
}

// noteLeader counts a leader change when the known leader's ID differs
// from the last one seen. Polled with leaderLoop, so two changes within
// one poll period (250 ms) count once.
func (n *Node) noteLeader() {
	id, _ := n.cfg.Raft.Leader()
	if id != "" && id != n.lastLeader {
		n.lastLeader = id
		n.leaderChanges.Add(1)
	}
}

func (n *Node) setLeading(v bool) {
	n.mu.Lock()
	n.leading = v
	n.mu.Unlock()
}

func (n *Node) duties(ctx context.Context) {
	if err := n.cfg.Raft.Barrier(n.cfg.BarrierTimeout); err != nil {
		n.log.Warn("barrier after gaining leadership failed; retrying", "err", err)
		return
	}
	n.setLeading(true)
	defer n.setLeading(false)
	n.log.Info("leading: duties start")
	var wg sync.WaitGroup
	defer wg.Wait()
	if n.cfg.Registry != nil {
		wg.Add(1)
		go func() { defer wg.Done(); n.watchRegistry(ctx) }()
	}
	t := time.NewTicker(n.cfg.Tick)
	defer t.Stop()
	for {
		n.schedule(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// schedule runs one scheduler round and carries out its decision.
func (n *Node) schedule(ctx context.Context) {
	var d Decision
	now := n.cfg.Now()
	n.cfg.FSM.Read(func(s *State) { d = Plan(s, now) })
	for _, c := range d.Commands {
		r, err := n.cfg.Server.ApplyAsLeader(c)
		if err != nil {
			n.log.Warn("scheduler command not applied", "kind", c.Kind(), "err", err)
			return
		}
		if r.Code != OK {
			n.log.Info("scheduler command refused", "kind", c.Kind(), "code", r.Code, "msg", r.Msg)
			continue
		}
		switch {
		case c.Schedule != nil && c.Schedule.Fallback:
			n.log.Warn("falling back from a corrupt checkpoint", "job", c.Schedule.Job, "generation", c.Schedule.Generation, "reason", c.Schedule.Reason)
		case c.Fail != nil:
			n.log.Warn("job failed", "job", c.Fail.Job, "reason", c.Fail.Reason)
		}
	}
	if n.cfg.Deleter == nil || len(d.Deletions) == 0 {
		return
	}
	purged := map[string][]int64{}
	for _, del := range d.Deletions {
		ok := true
		for _, o := range del.Checkpoint.Objects {
			if err := n.cfg.Deleter.Delete(ctx, o.Path); err != nil {
				n.log.Warn("deleting retired checkpoint object", "job", del.Job, "step", del.Checkpoint.Step, "object", o.Path, "err", err)
				ok = false
				break
			}
		}
		if ok {
			purged[del.Job] = append(purged[del.Job], del.Checkpoint.Step)
		}
	}
	for job, steps := range purged {
		if _, err := n.cfg.Server.ApplyAsLeader(&Command{Purge: &Purge{Job: job, Steps: steps}}); err != nil {
			n.log.Warn("purge not applied", "job", job, "err", err)
		}
	}
}

// watchRegistry mirrors the registry into the state: the initial list is
// reconciled (workers the state thinks up but unregistered go down), then
// each event is applied. A broken watch is restarted.
func (n *Node) watchRegistry(ctx context.Context) {
	for ctx.Err() == nil {
		if err := n.watchOnce(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("worker registry watch", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (n *Node) watchOnce(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	list, events, err := n.cfg.Registry.Watch(wctx)
	if err != nil {
		return err
	}
	var cmds []*Command
	n.cfg.FSM.Read(func(s *State) { cmds = reconcile(s, list) })
	for _, c := range cmds {
		if _, err := n.cfg.Server.ApplyAsLeader(c); err != nil {
			return fmt.Errorf("reconcile workers: %w", err)
		}
	}
	for ev := range events {
		c := &Command{WorkerDown: &WorkerDown{WorkerID: ev.Worker.ID, Reason: "registration gone"}}
		if ev.Up {
			c = &Command{WorkerUp: &WorkerUp{Worker: ev.Worker}}
		}
		if _, err := n.cfg.Server.ApplyAsLeader(c); err != nil {
			return fmt.Errorf("apply registry event: %w", err)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("registry watch ended")
}

// reconcile returns the commands that make the state's worker liveness
// match the registry's list.
func reconcile(s *State, list []WorkerInfo) []*Command {
	var cmds []*Command
	seen := map[string]bool{}
	for _, w := range list {
		seen[w.ID] = true
		have := s.Workers[w.ID]
		if have == nil || !have.Up || have.Addr != w.Addr {
			cmds = append(cmds, &Command{WorkerUp: &WorkerUp{Worker: w}})
		}
	}
	for _, w := range s.SortedWorkers() {
		if w.Up && !seen[w.ID] {
			cmds = append(cmds, &Command{WorkerDown: &WorkerDown{WorkerID: w.ID, Reason: "not registered"}})
		}
	}
	return cmds
}

// HTTPHandler serves /healthz (the process is up), /readyz (this node sees
// a leader and its state has caught up with the log, so it answers reads)
// and /metrics (Prometheus).
func (n *Node) HTTPHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &collector{n: n})
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		id, addr := n.cfg.Raft.Leader()
		if id == "" {
			http.Error(w, "no leader known", http.StatusServiceUnavailable)
			return
		}
		if n.cfg.Server != nil {
			if err := n.cfg.Server.current(r.Context()); err != nil {
				http.Error(w, status.Convert(err).Message(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintf(w, "ok: leader %s at %s\n", id, addr)
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// Per-job series label the job loom_job, not job: Prometheus sets job to
// the scrape job's name and would rename ours to exported_job.
var (
	descLeader        = prometheus.NewDesc("loom_coordinator_leader", "1 when this node runs the leader duties.", nil, nil)
	descLeaderChanges = prometheus.NewDesc("loom_coordinator_leader_changes_seen_total", "Changes of the Raft leader this node saw, its first known leader included.", nil, nil)
	descApplied       = prometheus.NewDesc("loom_coordinator_applied_commands_total", "Commands applied to this replica's state.", nil, nil)
	descJobs          = prometheus.NewDesc("loom_coordinator_jobs", "Jobs by state.", []string{"state"}, nil)
	descWorkers       = prometheus.NewDesc("loom_coordinator_workers", "Workers known to the coordinator, by status (down: registration ended; the others are registered).", []string{"status"}, nil)
	descStep          = prometheus.NewDesc("loom_job_step", "Last reported global step of each job.", []string{"loom_job"}, nil)
	descRunning       = prometheus.NewDesc("loom_job_running", "1 while the job runs (state running), else 0.", []string{"loom_job"}, nil)
	descRestarts      = prometheus.NewDesc("loom_job_restarts_total", "Generations of the job started because a worker was lost or failed, since its submission or last resume.", []string{"loom_job"}, nil)
	descLastCkpt      = prometheus.NewDesc("loom_job_last_checkpoint_timestamp_seconds", "Unix time the job's newest checkpoint was committed (absent before its first).", []string{"loom_job"}, nil)
)

type collector struct{ n *Node }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeader, descLeaderChanges, descApplied, descJobs, descWorkers, descStep, descRunning, descRestarts, descLastCkpt} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	lead := 0.0
	if c.n.Leading() {
		lead = 1
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, lead)
	ch <- prometheus.MustNewConstMetric(descLeaderChanges, prometheus.CounterValue, float64(c.n.leaderChanges.Load()))
	c.n.cfg.FSM.Read(func(s *State) {
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.CounterValue, float64(s.Index))
		jobs := map[JobState]int{Pending: 0, Running: 0, Succeeded: 0, Failed: 0, Cancelled: 0}
		for _, j := range s.Jobs {
			jobs[j.State]++
			running := 0.0
			if j.State == Running {
				running = 1
			}
			ch <- prometheus.MustNewConstMetric(descStep, prometheus.GaugeValue, float64(j.Step), j.Name)
			ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, running, j.Name)
			ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(j.Restarts), j.Name)
			if cp := j.LastCheckpoint(); cp != nil {
				ch <- prometheus.MustNewConstMetric(descLastCkpt, prometheus.GaugeValue, float64(cp.Committed.Unix())+float64(cp.Committed.Nanosecond())/1e9, j.Name)
			}
		}
		for st, k := range jobs {
			ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, float64(k), string(st))
		}
		ws := map[string]int{"down": 0, "unhealthy": 0, "busy": 0, "free": 0}
		for _, w := range s.Workers {
			switch {
			case !w.Up:
				ws["down"]++
			case w.Unhealthy:
				ws["unhealthy"]++
			case w.Job != "":
				ws["busy"]++
			default:
				ws["free"]++
			}
		}
		for st, k := range ws {
			ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(k), st)
		}
	})
}
