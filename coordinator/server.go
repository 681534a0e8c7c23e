package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
)

// Raft is what the coordinator needs from its consensus node;
// coordinator/consensus.Node implements it.
type Raft interface {
	// Apply proposes an encoded command and returns the FSM's response
	// (a Result) once committed and applied on this node. It fails with
	// raft.ErrNotLeader on a follower; raft.ErrLeadershipLost means the
	// command may or may not have been committed.
	Apply(cmd []byte, timeout time.Duration) (any, error)
	// Barrier returns once every entry committed before it is applied.
	Barrier(timeout time.Duration) error
	IsLeader() bool
	// Leader returns the current leader's ID and Raft address ("" if none).
	Leader() (id, addr string)
	// LeaderCh delivers true on gaining leadership and false on losing it.
	LeaderCh() <-chan bool
}

// ServerConfig configures a Server.
type ServerConfig struct {
	NodeID string
	Raft   Raft
	FSM    *FSM
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ApplyTimeout bounds one write, forwarding and retries included.
	// Default 10s.
	ApplyTimeout time.Duration
	// ForwardDial are the options for dialling the leader's API address
	// when forwarding (transport credentials and the token). Default:
	// insecure.
	ForwardDial []grpc.DialOption
	// ProgressFlush is how often batched progress reports are applied.
	// Default 200ms.
	ProgressFlush time.Duration
	Logger        *slog.Logger
}

// Server implements the Jobs, Workers and Cluster gRPC services on one
// coordinator node. Reads come from the node's replica; writes are applied
// through Raft on the leader, forwarded there by followers, and retried
// across leader changes (every user write carries an ID, so a retry applies
// once). Progress reports are batched per node.
type Server struct {
	cfg ServerConfig
	log *slog.Logger

	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn

	progMu  sync.Mutex
	pending map[string]ProgressReport
	// pendingSteps counts the step records of pending.
	pendingSteps int
	// batch is the outcome of the next flush, for the reports that carry
	// step metrics: they answer once it is applied (batch.go).
	batch *progressBatch
}

// NewServer returns a server; call Run to start its progress batcher.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.ProgressFlush == 0 {
		cfg.ProgressFlush = 200 * time.Millisecond
	}
	if cfg.ForwardDial == nil {
		cfg.ForwardDial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger, conns: map[string]*grpc.ClientConn{}, pending: map[string]ProgressReport{}, batch: newProgressBatch()}
}

// Register adds the three services to g.
func (s *Server) Register(g *grpc.Server) {
	loompb.RegisterJobsServer(g, jobsServer{Server: s})
	loompb.RegisterWorkersServer(g, workersServer{Server: s})
	loompb.RegisterClusterServer(g, clusterServer{Server: s})
	ms := membershipServer{Server: s}
	g.RegisterService(ms.desc(), ms)
}

// Run flushes batched progress reports until ctx ends, then closes the
// forwarding connections.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.ProgressFlush)
	defer t.Stop()
	defer s.closeConns()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.flushProgress(ctx)
		}
	}
}

func (s *Server) closeConns() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for a, c := range s.conns {
		c.Close()
		delete(s.conns, a)
	}
}

func (s *Server) flushProgress(ctx context.Context) {
	s.progMu.Lock()
	if len(s.pending) == 0 {
		s.progMu.Unlock()
		return
	}
	reps := make([]ProgressReport, 0, len(s.pending))
	for _, r := range s.pending {
		reps = append(reps, r)
	}
	s.pending = map[string]ProgressReport{}
	s.pendingSteps = 0
	b := s.batch
	s.batch = newProgressBatch()
	s.progMu.Unlock()
	sort.Slice(reps, func(a, b int) bool { return reps[a].WorkerID < reps[b].WorkerID })
	_, err := s.apply(ctx, &Command{Progress: &Progress{Reports: reps}}, false)
	if err != nil {
		s.log.Warn("progress batch not applied", "reports", len(reps), "err", err)
	}
	b.finish(err)
}

// NewID returns a random command ID.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func retryable(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.Is(err, raft.ErrEnqueueTimeout)
}

// Apply applies c through Raft: directly on the leader, forwarded from a
// follower, retried across leader changes until ApplyTimeout. c.Time is set
// from the clock when zero. A command without an ID is not retried after
// an indeterminate failure. On a follower, Apply returns once this node's
// replica has applied the command too, so the caller reads its own write.
func (s *Server) Apply(ctx context.Context, c *Command) (Result, error) {
	return s.apply(ctx, c, true)
}

// ApplyAsLeader applies c only if this node leads, never forwarding: the
// leader duties use it, so that a deposed leader's decisions are dropped
// rather than sent to its successor.
func (s *Server) ApplyAsLeader(c *Command) (Result, error) {
	if c.Time.IsZero() {
		c.Time = s.cfg.Now()
	}
	if !s.cfg.Raft.IsLeader() {
		return Result{}, raft.ErrNotLeader
	}
	b, err := c.Encode()
	if err != nil {
		return Result{}, err
	}
	resp, err := s.cfg.Raft.Apply(b, s.cfg.ApplyTimeout)
	if err != nil {
		return Result{}, err
	}
	r, ok := resp.(Result)
	if !ok {
		return Result{}, fmt.Errorf("raft apply returned %T, want coordinator.Result", resp)
	}
	return r, nil
}

// apply is Apply; readOwn=false skips waiting for this replica to catch up
// (for writes whose caller reads nothing back: progress, checkpoints).
func (s *Server) apply(ctx context.Context, c *Command, readOwn bool) (Result, error) {
	if c.Time.IsZero() {
		c.Time = s.cfg.Now()
	}
	b, err := c.Encode()
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	var last error
	for {
		if s.cfg.Raft.IsLeader() {
			resp, err := s.raftApply(ctx, b)
			if err == nil {
				r, ok := resp.(Result)
				if !ok {
					return Result{}, fmt.Errorf("raft apply returned %T, want coordinator.Result", resp)
				}
				return r, nil
			}
			if !retryable(err) || (c.ID == "" && errors.Is(err, raft.ErrLeadershipLost)) {
				return Result{}, status.Errorf(codes.Unavailable, "apply %s: %v", c.Kind(), err)
			}
			last = err
		} else if addr := s.leaderAPI(); addr != "" {
			r, err := s.forward(ctx, addr, b)
			if err == nil {
				// Read-your-writes: wait for this replica to apply it.
				if !readOwn {
					return r, nil
				}
				if werr := s.cfg.FSM.WaitIndex(ctx, r.Index); werr != nil {
					return r, status.Errorf(codes.Unavailable, "applied on the leader, but this node did not catch up: %v", werr)
				}
				return r, nil
			}
			if status.Code(err) != codes.Unavailable {
				return Result{}, err
			}
			last = err
		} else {
			last = errors.New("no leader known")
		}
		select {
		case <-ctx.Done():
			return Result{}, status.Errorf(codes.Unavailable, "apply %s: no leader accepted it within %s (last error: %v)", c.Kind(), s.cfg.ApplyTimeout, last)
		case <-time.After(backoff):
		}
		if backoff < 500*time.Millisecond {
			backoff *= 2
		}
	}
}

// ContextApplier is implemented by a Raft node that can bound the whole
// wait for a commit by a context (consensus.Node does); Raft.Apply's timeout
// bounds only the enqueueing.
type ContextApplier interface {
	ApplyContext(ctx context.Context, cmd []byte) (any, error)
}

func (s *Server) raftApply(ctx context.Context, b []byte) (any, error) {
	if ca, ok := s.cfg.Raft.(ContextApplier); ok {
		resp, err := ca.ApplyContext(ctx, b)
		if err != nil && ctx.Err() != nil {
			// Indeterminate, like a lost leadership: it may still commit.
			return nil, fmt.Errorf("%w: %v", raft.ErrLeadershipLost, err)
		}
		return resp, err
	}
	return s.cfg.Raft.Apply(b, s.cfg.ApplyTimeout)
}

// leaderAPI returns the leader's API address from the replicated node table.
func (s *Server) leaderAPI() string {
	id, _ := s.cfg.Raft.Leader()
	if id == "" || id == s.cfg.NodeID {
		return ""
	}
	var addr string
	s.cfg.FSM.Read(func(st *State) { addr = st.Nodes[id] })
	return addr
}

func (s *Server) conn(addr string) (*grpc.ClientConn, error) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if cc, ok := s.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, s.cfg.ForwardDial...)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "dial leader %s: %v", addr, err)
	}
	s.conns[addr] = cc
	return cc, nil
}

func (s *Server) forward(ctx context.Context, addr string, cmd []byte) (Result, error) {
	cc, err := s.conn(addr)
	if err != nil {
		return Result{}, err
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := loompb.NewClusterClient(cc).Apply(fctx, &loompb.ApplyRequest{Command: cmd})
	if err != nil {
		if fctx.Err() != nil && ctx.Err() == nil {
			return Result{}, status.Errorf(codes.Unavailable, "forward to %s: %v", addr, err)
		}
		return Result{}, err
	}
	var r Result
	if err := json.Unmarshal(resp.Result, &r); err != nil {
		return Result{}, fmt.Errorf("forward to %s: bad result: %w", addr, err)
	}
	return r, nil
}

// write applies a user or worker write and maps a refused command to its
// gRPC status.
func (s *Server) write(ctx context.Context, c *Command) error {
	r, err := s.Apply(ctx, c)
	if err != nil {
		return err
	}
	return resultStatus(r)
}

func resultStatus(r Result) error {
	switch r.Code {
	case OK:
		return nil
	case InvalidArgument:
		return status.Error(codes.InvalidArgument, r.Msg)
	case NotFound:
		return status.Error(codes.NotFound, r.Msg)
	case AlreadyExists:
		return status.Error(codes.AlreadyExists, r.Msg)
	default:
		return status.Error(codes.FailedPrecondition, r.Msg)
	}
}

func (s *Server) job(name string) (*loompb.Job, error) {
	var pj *loompb.Job
	s.cfg.FSM.Read(func(st *State) {
		if j := st.Jobs[name]; j != nil {
			pj = jobProto(st, j)
		}
	})
	if pj == nil {
		return nil, status.Errorf(codes.NotFound, "no job named %q", name)
	}
	return pj, nil
}

func reqID(id string) string {
	if id == "" {
		return NewID()
	}
	return id
}

type jobsServer struct {
	*Server
	loompb.UnimplementedJobsServer
}

func (s jobsServer) SubmitJob(ctx context.Context, req *loompb.SubmitJobRequest) (*loompb.Job, error) {
	file := req.File
	if file == "" {
		file = "manifest"
	}
	m, err := api.ParseManifest(file, req.ManifestYaml)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.write(ctx, &Command{ID: reqID(req.RequestId), Submit: &Submit{Manifest: *m}}); err != nil {
		return nil, err
	}
	return s.job(m.Name)
}

func (s jobsServer) GetJob(ctx context.Context, req *loompb.GetJobRequest) (*loompb.Job, error) {
	if err := s.current(ctx); err != nil {
		return nil, err
	}
	return s.job(req.Job)
}

// readIndexRaft is what a Raft implementation may add so that reads are
// never served from a state that has not caught up (consensus.Node).
type readIndexRaft interface {
	Current() bool
	CaughtUpTo(index uint64) bool
	CommitIndex() uint64
}

// readIndexWait bounds how long a read waits for this node to catch up
// with the leader's commit index before it is refused.
const readIndexWait = 2 * time.Second

// current refuses a read, as Unavailable (clients try the next
// coordinator), until this node's state machine is known to have caught
// up: a restarted node's state is empty or old until it has replayed its
// log. The first read asks the leader for its commit index (the leader
// its own) and waits up to readIndexWait for this node to apply it; once
// it has, reads are served locally.
func (s *Server) current(ctx context.Context) error {
	r, ok := s.cfg.Raft.(readIndexRaft)
	if !ok || r.Current() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, readIndexWait)
	defer cancel()
	var index uint64
	if s.cfg.Raft.IsLeader() {
		index = r.CommitIndex()
	} else if addr := s.leaderAPI(); addr != "" {
		cc, err := s.conn(addr)
		if err == nil {
			out := &wrapperspb.BytesValue{}
			if err = cc.Invoke(ctx, commitIndexMethod, wrapperspb.Bytes([]byte("{}")), out); err == nil {
				var resp CommitIndexResponse
				if err = json.Unmarshal(out.Value, &resp); err == nil {
					index = resp.Index
				}
			}
		}
		if err != nil {
			return status.Errorf(codes.Unavailable, "coordinator %s cannot tell whether it has caught up with the cluster's log (asking the leader at %s: %v); ask another", s.cfg.NodeID, addr, err)
		}
	}
	for index > 0 {
		if r.CaughtUpTo(index) {
			return nil
		}
		select {
		case <-ctx.Done():
			index = 0
		case <-time.After(5 * time.Millisecond):
		}
	}
	return status.Errorf(codes.Unavailable, "coordinator %s is catching up with the cluster's log; ask another", s.cfg.NodeID)
}

func (s jobsServer) ListJobs(ctx context.Context, req *loompb.ListJobsRequest) (*loompb.ListJobsResponse, error) {
	if err := s.current(ctx); err != nil {
		return nil, err
	}
	out := &loompb.ListJobsResponse{}
	s.cfg.FSM.Read(func(st *State) {
		for _, j := range st.SortedJobs() {
			out.Jobs = append(out.Jobs, jobProto(st, j))
		}
	})
	return out, nil
}

func (s jobsServer) CancelJob(ctx context.Context, req *loompb.CancelJobRequest) (*loompb.Job, error) {
	if err := s.write(ctx, &Command{ID: reqID(req.RequestId), Cancel: &Cancel{Job: req.Job}}); err != nil {
		return nil, err
	}
	return s.job(req.Job)
}

func (s jobsServer) ResumeJob(ctx context.Context, req *loompb.ResumeJobRequest) (*loompb.Job, error) {
	if req.FromStep < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "from_step %d is negative", req.FromStep)
	}
	if err := s.write(ctx, &Command{ID: reqID(req.RequestId), Resume: &Resume{Job: req.Job, FromStep: req.FromStep}}); err != nil {
		return nil, err
	}
	return s.job(req.Job)
}

func (s jobsServer) WatchJob(req *loompb.WatchJobRequest, stream loompb.Jobs_WatchJobServer) error {
	ctx := stream.Context()
	if err := s.current(ctx); err != nil {
		return err
	}
	since := req.SinceSeq
	var lastUpdated int64 = -1
	for {
		changed := s.cfg.FSM.Changed()
		var events []*loompb.JobEvent
		var state *loompb.Job
		var terminal, found bool
		s.cfg.FSM.Read(func(st *State) {
			j := st.Jobs[req.Job]
			if j == nil {
				return
			}
			found = true
			state = jobProto(st, j)
			terminal = j.State.Terminal()
			for _, e := range j.Events {
				if e.Seq > since {
					events = append(events, &loompb.JobEvent{Seq: e.Seq, Job: e.Job, Kind: e.Kind, Message: e.Msg, UnixMs: e.Time.UnixMilli()})
				}
			}
		})
		if !found {
			return status.Errorf(codes.NotFound, "no job named %q", req.Job)
		}
		if len(events) == 0 && state.UpdatedUnixMs != lastUpdated {
			events = append(events, &loompb.JobEvent{Job: req.Job, Kind: "progress", UnixMs: state.UpdatedUnixMs})
		}
		for i, e := range events {
			if i == len(events)-1 {
				e.State = state
			}
			if err := stream.Send(e); err != nil {
				return err
			}
			if e.Seq > since {
				since = e.Seq
			}
		}
		lastUpdated = state.UpdatedUnixMs
		if terminal {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

type workersServer struct {
	*Server
	loompb.UnimplementedWorkersServer
}

func (s workersServer) WatchAssignment(req *loompb.WatchAssignmentRequest, stream loompb.Workers_WatchAssignmentServer) error {
	if req.WorkerId == "" {
		return status.Error(codes.InvalidArgument, "worker_id is empty")
	}
	ctx := stream.Context()
	var last *loompb.Assignment
	for {
		changed := s.cfg.FSM.Changed()
		var a *loompb.Assignment
		s.cfg.FSM.Read(func(st *State) { a = assignmentProto(st, req.WorkerId) })
		if last == nil || !sameAssignment(last, a) {
			if err := stream.Send(a); err != nil {
				return err
			}
			last = a
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

func sameAssignment(a, b *loompb.Assignment) bool {
	if a.Idle != b.Idle || a.Job != b.Job || a.Generation != b.Generation || len(a.Peers) != len(b.Peers) {
		return false
	}
	for i := range a.Peers {
		if a.Peers[i].Addr != b.Peers[i].Addr || a.Peers[i].WorkerId != b.Peers[i].WorkerId {
			return false
		}
	}
	return true
}

func (s workersServer) ReportProgress(ctx context.Context, req *loompb.ReportProgressRequest) (*loompb.ReportProgressResponse, error) {
	var stale bool
	s.cfg.FSM.Read(func(st *State) { stale = certainlyStale(st, req.WorkerId, req.Job, req.Generation) })
	if stale {
		return nil, status.Errorf(codes.FailedPrecondition, "job %q generation %d is not current for worker %q; wait for the next assignment", req.Job, req.Generation, req.WorkerId)
	}
	rep := ProgressReport{WorkerID: req.WorkerId, Job: req.Job, Generation: req.Generation, Step: req.Step,
		Samples: req.SamplesConsumed, TokensPerSec: finiteOrZero(req.TokensPerSec),
		StepTime: time.Duration(finiteOrZero(req.StepTimeSeconds) * float64(time.Second)), Steps: stepRecords(req.Steps)}
	if len(req.Losses) > 0 {
		// A diverged loss (NaN, ±Inf) is news to show, not an input to
		// refuse: Float keeps it through the log's JSON.
		rep.Losses = make(map[string]Float, len(req.Losses))
		for k, v := range req.Losses {
			rep.Losses[k] = Float(v)
		}
	}
	s.progMu.Lock()
	old, ok := s.pending[req.WorkerId]
	if !ok && len(s.pending) >= maxPendingReports {
		s.progMu.Unlock()
		return nil, status.Errorf(codes.ResourceExhausted, "%d workers' progress reports are waiting for the next batch; retry", maxPendingReports)
	}
	if ok && old.Job == rep.Job && old.Generation == rep.Generation && len(old.Steps) > 0 {
		// The superseded report's step metrics go with this one.
		rep.Steps = append(old.Steps, rep.Steps...)
		if n := len(rep.Steps); n > MaxStepRecords {
			rep.Steps = rep.Steps[n-MaxStepRecords:]
		}
	}
	held := s.pendingSteps - len(old.Steps) + len(rep.Steps)
	if held > MaxPendingStepRecords {
		s.progMu.Unlock()
		return nil, status.Errorf(codes.ResourceExhausted, "%d step records are waiting for the next batch; retry", s.pendingSteps)
	}
	s.pendingSteps = held
	s.pending[req.WorkerId] = rep
	b := s.batch
	s.progMu.Unlock()
	if len(req.Steps) > 0 {
		// Step metrics are answered once applied, so that a worker whose
		// batch was lost (this node died or lost the leader) sends them
		// again, to another node.
		if err := b.wait(ctx, s.cfg.ApplyTimeout); err != nil {
			return nil, err
		}
	}
	return &loompb.ReportProgressResponse{}, nil
}

// maxPendingReports bounds the progress reports a node holds between two
// batches (one per worker ID): the batch becomes one Raft log entry.
const maxPendingReports = 4096

func (s workersServer) CommitCheckpoint(ctx context.Context, req *loompb.CommitCheckpointRequest) (*loompb.CommitCheckpointResponse, error) {
	// Progress reports this node holds go first: the report of the
	// committed step is newer than the commit in the worker's eyes, and
	// once the final checkpoint completes the job, a later batch would
	// be dropped (issue 15: the previous step's loss shown as final).
	s.flushProgress(ctx)
	c := &Commit{WorkerID: req.WorkerId, Job: req.Job, Generation: req.Generation, Step: req.Step, Samples: req.SamplesConsumed,
		Steps: stepRecords(req.Steps)}
	for _, o := range req.Objects {
		c.Objects = append(c.Objects, ObjectInfo{Path: o.Path, SHA256: o.Sha256, Size: o.Size})
	}
	r, err := s.apply(ctx, &Command{ID: reqID(req.RequestId), Commit: c}, false)
	if err == nil {
		err = resultStatus(r)
	}
	if err != nil {
		return nil, err
	}
	return &loompb.CommitCheckpointResponse{}, nil
}

// certainlyStale reports whether this replica knows that worker's report for
// (job, gen) is stale: the job has moved past gen, or ended, or runs gen
// without the worker. This replica may lag the leader: a job it does not
// know yet, or a generation newer than its own (a worker that failed over
// right after a new schedule), is not stale here; the state machine checks
// again when the report is applied.
func certainlyStale(st *State, worker, job string, gen int64) bool {
	j := st.Jobs[job]
	if j == nil || gen > j.Generation {
		return false
	}
	if gen < j.Generation || j.State != Running {
		return true
	}
	w := st.Workers[worker]
	return w == nil || w.Job != j.Name
}

// ReportFailure applies a WorkerFailed command; the scheduler then starts
// the next generation (or fails the job) on its next tick.
func (s workersServer) ReportFailure(ctx context.Context, req *loompb.ReportFailureRequest) (*loompb.ReportFailureResponse, error) {
	if req.WorkerId == "" || req.Job == "" {
		return nil, status.Error(codes.InvalidArgument, "report failure needs worker_id and job")
	}
	c := &WorkerFailed{WorkerID: req.WorkerId, Job: req.Job, Generation: req.Generation, Error: req.Error}
	switch req.Kind {
	case loompb.FailureKind_FAILURE_KIND_UNSPECIFIED:
	case loompb.FailureKind_FAILURE_KIND_CORRUPT_DATA:
		c.Kind = FailCorruptData
	case loompb.FailureKind_FAILURE_KIND_CORRUPT_CHECKPOINT:
		c.Kind, c.CheckpointStep = FailCorruptCheckpoint, req.CheckpointStep
	default:
		return nil, status.Errorf(codes.InvalidArgument, "report failure: kind %d is not a failure kind", req.Kind)
	}
	r, err := s.apply(ctx, &Command{ID: reqID(req.RequestId), WorkerFailed: c}, false)
	if err == nil {
		err = resultStatus(r)
	}
	if err != nil {
		return nil, err
	}
	return &loompb.ReportFailureResponse{}, nil
}

// Voters is what Join needs from the Raft node (consensus.Node has it).
type Voters interface {
	AddVoter(id, addr string, timeout time.Duration) error
}

// Join adds a voter on the leader, or forwards the request to it.
func (s clusterServer) Join(ctx context.Context, req *loompb.JoinRequest) (*loompb.JoinResponse, error) {
	if req.NodeId == "" || req.RaftAddr == "" {
		return nil, status.Error(codes.InvalidArgument, "join needs node_id and raft_addr")
	}
	v, ok := s.cfg.Raft.(Voters)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this node's consensus cannot add voters")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
	defer cancel()
	for {
		var err error
		if s.cfg.Raft.IsLeader() {
			if err = v.AddVoter(req.NodeId, req.RaftAddr, s.cfg.ApplyTimeout); err == nil {
				return &loompb.JoinResponse{}, nil
			}
			if !retryable(err) {
				return nil, status.Errorf(codes.FailedPrecondition, "add voter %s at %s: %v", req.NodeId, req.RaftAddr, err)
			}
		} else if addr := s.leaderAPI(); addr != "" {
			cc, derr := s.conn(addr)
			if derr != nil {
				return nil, derr
			}
			_, err = loompb.NewClusterClient(cc).Join(ctx, req)
			if err == nil || status.Code(err) != codes.Unavailable {
				return &loompb.JoinResponse{}, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, status.Errorf(codes.Unavailable, "join %s: no leader accepted it (last error: %v)", req.NodeId, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type clusterServer struct {
	*Server
	loompb.UnimplementedClusterServer
}

// Apply runs a forwarded command if this node is the leader.
func (s clusterServer) Apply(ctx context.Context, req *loompb.ApplyRequest) (*loompb.ApplyResponse, error) {
	if !s.cfg.Raft.IsLeader() {
		return nil, status.Error(codes.Unavailable, "not the leader")
	}
	c, err := DecodeCommand(req.Command)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	resp, err := s.raftApply(ctx, req.Command)
	if err != nil {
		if retryable(err) && !(c.ID == "" && errors.Is(err, raft.ErrLeadershipLost)) {
			return nil, status.Errorf(codes.Unavailable, "apply: %v", err)
		}
		return nil, status.Errorf(codes.Unavailable, "apply %s: %v", c.Kind(), err)
	}
	r, ok := resp.(Result)
	if !ok {
		return nil, status.Errorf(codes.Internal, "raft apply returned %T", resp)
	}
	b, _ := json.Marshal(r)
	return &loompb.ApplyResponse{Result: b}, nil
}

// finiteOrZero is v, or 0 when it is NaN or infinite (a rate or a time
// that was not measured).
func finiteOrZero(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
