package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

// genEnd is how a generation ended.
type genEnd int

const (
	endFailed   genEnd = iota // an error (collective, trainer, store)
	endFinished               // the stage's stop step is reached and checkpointed
	endDrained                // stopped at a drain checkpoint
	endStale                  // the coordinator said the generation is not current
	endStopped                // the agent stopped it (new assignment, drain timeout)
)

func (e genEnd) String() string {
	return [...]string{"failed", "finished", "drained", "stale", "stopped"}[e]
}

// generation runs one (job, generation) assignment in its own goroutine.
type generation struct {
	ag  *Agent
	a   *loompb.Assignment
	ctx context.Context

	cancel   context.CancelFunc
	abortMu  sync.Mutex
	abort    func() // aborts the transport; nil before the comm exists
	aborted  bool
	stopped  atomic.Bool
	stale    atomic.Bool
	drainReq atomic.Bool

	bucket string // checkpoint bucket

	rep    reporter
	sendMu sync.Mutex // one report in flight at a time
	// lastReport is the newest progress report built, sent again ahead
	// of each commit.
	lastReport atomic.Pointer[loompb.ReportProgressRequest]

	done chan struct{}
	// Set before done is closed.
	end           genEnd
	err           error
	lastStep      int64
	lastCommitted atomic.Int64
}

func (a *Agent) startGeneration(parent context.Context, as *loompb.Assignment) *generation {
	ctx, cancel := context.WithCancel(parent)
	g := &generation{ag: a, a: as, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	g.rep.wake = make(chan struct{}, 1)
	go g.run()
	return g
}

// stop aborts the generation: its context ends and its transport is
// aborted, so no rank stays blocked in a collective.
func (g *generation) stop() {
	g.stopped.Store(true)
	g.cancel()
	g.abortComm()
}

func (g *generation) requestDrain() { g.drainReq.Store(true) }

func (g *generation) setAbort(f func()) {
	g.abortMu.Lock()
	defer g.abortMu.Unlock()
	g.abort = f
	if g.aborted && f != nil {
		f()
	}
}

func (g *generation) abortComm() {
	g.abortMu.Lock()
	defer g.abortMu.Unlock()
	g.aborted = true
	if g.abort != nil {
		g.abort()
	}
}

// markStale is called when the coordinator refuses a report: the
// generation is over.
func (g *generation) markStale(err error) {
	if g.stale.CompareAndSwap(false, true) {
		g.ag.log.Info("generation is no longer current", "job", g.a.Job, "generation", g.a.Generation, "err", err)
		g.cancel()
		g.abortComm()
	}
}

func (g *generation) run() {
	var wg sync.WaitGroup
	wg.Go(g.report)
	end, err := g.train()
	switch {
	case g.stopped.Load():
		end = endStopped
	case g.stale.Load() && end == endFailed:
		end = endStale
	}
	g.end, g.err = end, err
	if end == endFailed && ReportableFailure(err) {
		g.reportFailure(err)
	}
	if end == endFinished || end == endDrained {
		// The last step's report, if still pending, goes out before the
		// agent waits for its next assignment.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(g.ctx), callTimeout)
		g.sendPending(ctx)
		cancel()
	}
	g.cancel()
	wg.Wait()
	close(g.done)
}

// reportFailure tells the coordinator that this generation failed with
// err, so that it starts the next one at once (or fails the job once the
// manifest's max_restarts are spent) rather than after the stall timeout.
// It is bounded by reportFailureTimeout; a refusal (the generation is
// already stale) or an unreachable coordinator is only logged: the stall
// detection remains the fallback.
func (g *generation) reportFailure(err error) {
	ag := g.ag
	kind, step := FailureKind(err)
	req := &loompb.ReportFailureRequest{WorkerId: ag.cfg.Info.ID, Job: g.a.Job, Generation: g.a.Generation,
		Error: err.Error(), RequestId: requestID(fmt.Sprintf("failure/%s/%d/%s", g.a.Job, g.a.Generation, ag.cfg.Info.ID)),
		Kind: kind, CheckpointStep: step}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.ctx), reportFailureTimeout)
	defer cancel()
	if rerr := ag.cfg.Coordinator.ReportFailure(ctx, req); rerr != nil {
		ag.log.Warn("failure report not accepted", "job", g.a.Job, "generation", g.a.Generation, "failure", err, "err", rerr)
		ag.metrics.failureReports.WithLabelValues("error").Inc()
		return
	}
	ag.log.Info("reported generation failure", "job", g.a.Job, "generation", g.a.Generation, "failure", err)
	ag.metrics.failureReports.WithLabelValues("ok").Inc()
}

// maxRequestID is the coordinator's limit on request IDs
// (coordinator.MaxRequestID; worker does not import coordinator).
const maxRequestID = 128

// requestID returns id, or a hash of it when it is longer than the
// coordinator accepts (a long worker ID): the same input always gives the
// same ID, so retries still deduplicate.
func requestID(id string) string {
	if len(id) <= maxRequestID {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return id[:strings.IndexByte(id, '/')+1] + hex.EncodeToString(sum[:])
}

// reportFailureTimeout bounds a failure report, retries across
// coordinators included.
const reportFailureTimeout = 30 * time.Second

// checkpointLocation is where a job's checkpoints go: the manifest's
// checkpoint.uri, or DefaultBucket under checkpoints/JOB.
func (g *generation) checkpointLocation(m *api.Manifest) (bucket, prefix string, err error) {
	if m.Checkpoint.URI == "" {
		return g.ag.cfg.DefaultBucket, shard.JoinKey("checkpoints", m.Name), nil
	}
	loc, err := shard.ParseLocation(m.Checkpoint.URI)
	if err != nil {
		return "", "", fmt.Errorf("manifest checkpoint.uri: %w", err)
	}
	if !loc.S3 {
		return "", "", fmt.Errorf("manifest checkpoint.uri %q: workers write checkpoints to s3:// locations only", m.Checkpoint.URI)
	}
	return loc.Bucket, loc.Prefix, nil
}

// RestoreRef converts the assignment's restore checkpoint to the trainer's
// form (object paths s3://BUCKET/KEY become KEY of the bucket's store). It
// returns nil when the assignment restores nothing. A checkpoint of an
// earlier stage is that stage's final one: the trainer initialises the new
// stage from it.
func RestoreRef(a *loompb.Assignment, bucket string) (*trainer.CheckpointRef, error) {
	c := a.Restore
	if c == nil {
		return nil, nil
	}
	ref, err := CheckpointRef(c, bucket)
	if err != nil {
		return nil, fmt.Errorf("assignment restore %w", err)
	}
	return ref, nil
}

// CheckpointRef converts a committed checkpoint, whose objects are
// s3://BUCKET/KEY paths, to the trainer's form: the KEYs in bucket's store.
// It is an error, naming the object, if one lies outside bucket.
func CheckpointRef(c *loompb.Checkpoint, bucket string) (*trainer.CheckpointRef, error) {
	ref := &trainer.CheckpointRef{Stage: int(c.Stage), Step: c.Step, Generation: uint64(c.Generation), Samples: c.SamplesConsumed}
	for i, o := range c.Objects {
		key, err := objectKey(bucket, o.Path)
		if err != nil {
			return nil, fmt.Errorf("checkpoint at step %d: objects[%d]: %w", c.Step, i, err)
		}
		ref.Objects = append(ref.Objects, trainer.CheckpointObject{Path: key, SHA256: o.Sha256, Size: o.Size})
	}
	return ref, nil
}

// objectPath names a checkpoint object in the coordinator's records.
func objectPath(bucket, key string) string { return "s3://" + bucket + "/" + key }

func objectKey(bucket, path string) (string, error) {
	key, ok := strings.CutPrefix(path, "s3://"+bucket+"/")
	if !ok || key == "" {
		return "", fmt.Errorf("object %q is not in the checkpoint bucket s3://%s", path, bucket)
	}
	return key, nil
}

// Commit implements trainer.Committer through the coordinator.
func (g *generation) Commit(ctx context.Context, ref trainer.CheckpointRef) error {
	req := &loompb.CommitCheckpointRequest{
		WorkerId: g.ag.cfg.Info.ID, Job: g.a.Job, Generation: g.a.Generation, Step: ref.Step,
		SamplesConsumed: ref.Samples,
		RequestId:       requestID(fmt.Sprintf("commit/%s/%d/%d", g.a.Job, g.a.Generation, ref.Step)),
	}
	for _, o := range ref.Objects {
		req.Objects = append(req.Objects, &loompb.CheckpointObject{Path: objectPath(g.bucket, o.Path), Sha256: o.SHA256, Size: o.Size})
	}
	// The newest progress report goes first, and synchronously: the
	// reporter sends asynchronously, and once the final checkpoint
	// completes the job the coordinator drops later reports, so the
	// job would show the step before's losses as its last (issue 15).
	if r := g.lastReport.Load(); r != nil && r.Step >= ref.Step {
		g.send(ctx, r)
	}
	// The unconfirmed step metrics go into the history with the
	// checkpoint: a later generation restarts from it and never reports
	// the steps before it again.
	req.Steps = g.rep.unconfirmed()
	if err := g.ag.cfg.Coordinator.CommitCheckpoint(ctx, req); err != nil {
		return fmt.Errorf("coordinator refused checkpoint at step %d of job %q generation %d: %w", ref.Step, g.a.Job, g.a.Generation, err)
	}
	g.lastCommitted.Store(ref.Step)
	if n := len(req.Steps); n > 0 {
		g.rep.confirm(req.Steps[n-1].Step)
	}
	return nil
}

func (g *generation) train() (end genEnd, err error) {
	a, ag := g.a, g.ag
	log := ag.log.With("job", a.Job, "generation", a.Generation, "rank", a.Rank)
	m, err := api.ParseManifest(fmt.Sprintf("job %q (assignment manifest)", a.Job), a.ManifestYaml)
	if err != nil {
		return endFailed, err
	}
	bucket, prefix, err := g.checkpointLocation(m)
	if err != nil {
		return endFailed, err
	}
	g.bucket = bucket
	store, err := ag.cfg.OpenBucket(bucket)
	if err != nil {
		return endFailed, fmt.Errorf("checkpoint bucket %q: %w", bucket, err)
	}
	// From here on the generation's log also goes next to the job's
	// checkpoints, for loom logs.
	jl := newJobLog(store, prefix, a.Generation, int64(a.Rank), ag.log)
	log = slog.New(jl.tee(ag.log.Handler())).With("job", a.Job, "generation", a.Generation, "rank", a.Rank)
	defer func() {
		if err != nil {
			log.Error("generation ended", "err", err)
		} else {
			log.Info("generation ended", "step", g.lastStep)
		}
		jl.close()
	}()
	restore, err := RestoreRef(a, bucket)
	if err != nil {
		return endFailed, err
	}
	var comm *collective.Comm
	if a.World > 1 {
		c, abort, err := ag.cfg.NewComm(g.ctx, a, ag.cfg.CollectiveTimeout)
		if err != nil {
			return endFailed, &peerError{fmt.Errorf("connecting the ring: %w", err)}
		}
		comm = c
		g.setAbort(abort)
		defer func() {
			if g.ctx.Err() != nil {
				g.abortComm()
			} else {
				comm.Close()
			}
		}()
	}
	job := trainer.Job{
		Manifest: m, Stage: int(a.Stage), Rank: int(a.Rank), World: int(a.World), Generation: uint64(a.Generation),
		Comm: comm, Store: store, CheckpointPrefix: prefix, OpenDataset: ag.cfg.OpenDataset, Committer: g,
		StopStep: a.StopStep, Logger: log, Now: ag.cfg.Now, Device: ag.cfg.Device,
	}
	from := "initialisation"
	if restore != nil {
		from = fmt.Sprintf("checkpoint at step %d", restore.Step)
	}
	log.Info("starting generation", "stage", a.StageName, "world", a.World, "from", from, "stop_step", a.StopStep)
	tr, err := ag.cfg.NewTrainer(g.ctx, job, restore)
	if err != nil {
		return endFailed, fmt.Errorf("building the trainer run: %w", err)
	}
	var async sync.WaitGroup
	defer func() {
		if err := tr.Close(); err != nil {
			log.Warn("closing the trainer run", "err", err)
		}
		async.Wait()
	}()
	collect := func(r trainer.CheckpointResult) {
		ag.metrics.observeCheckpoint(r)
		switch {
		case r.Err != nil:
			log.Warn("checkpoint not committed", "err", r.Err)
		case !r.Skipped:
			log.Info("checkpoint committed", "step", r.Ref.Step, "objects", len(r.Ref.Objects),
				"blocked", r.Blocked, "upload", r.Upload, "commit", r.Commit)
		}
	}
	interval := m.Checkpoint.Interval
	for first := true; ; first = false {
		// Cancelling or replacing the generation ends its context: stop
		// here, before another step. A single rank has no collective to
		// abort, and the trainer's step does not look at the context while
		// it computes, so without this check it would train to the end of
		// the stage (issue 16).
		if err := g.ctx.Err(); err != nil {
			return endFailed, fmt.Errorf("generation stopped after step %d: %w", g.lastStep, err)
		}
		if tr.Done() {
			if first {
				log.Info("stage already complete at its restore point")
			}
			return endFinished, nil
		}
		p, err := tr.Step(g.ctx)
		if err != nil {
			return endFailed, fmt.Errorf("step %d: %w", tr.State().Step+1, err)
		}
		g.lastStep = p.Step
		ag.metrics.observeStep(p)
		req := progressRequest(ag.cfg.Info.ID, a, p)
		g.lastReport.Store(req)
		var rec *loompb.StepMetrics
		if a.Rank == 0 {
			rec = stepMetrics(p, ag.cfg.Now())
		}
		g.rep.put(req, rec)
		log.Debug("step", "stage", p.StageName, "step", p.Step, "loss", p.Loss, "terms", p.Terms, "tokens_per_sec", p.TokensPerSec,
			"step_time", p.StepTime, "comm_wait", p.CommWait, "data_wait", p.DataWait, "samples", p.Samples, "sample_ids", p.SampleIDs)
		if p.StageStep == 1 || p.Step%10 == 0 || p.Step >= a.StopStep {
			log.Info("step", "stage", p.StageName, "step", p.Step, "of", a.StopStep, "loss", p.Loss, "tokens_per_sec", int64(p.TokensPerSec),
				"step_time", p.StepTime.Round(1e6))
		}
		draining, err := g.vote(comm)
		if err != nil {
			return endFailed, &peerError{fmt.Errorf("drain vote after step %d: %w", p.Step, err)}
		}
		if err := g.ctx.Err(); err != nil {
			// Stopped during the step: no checkpoint of a generation that
			// is no longer wanted (its commit would be refused anyway).
			return endFailed, fmt.Errorf("generation stopped at step %d: %w", p.Step, err)
		}
		switch PlanStep(p.Step, a.StopStep, interval, draining) {
		case Continue:
		case Checkpoint:
			ch, err := tr.Checkpoint(g.ctx)
			if err != nil {
				return endFailed, fmt.Errorf("checkpoint at step %d: %w", p.Step, err)
			}
			async.Go(func() {
				select {
				case r := <-ch:
					collect(r)
				case <-g.ctx.Done():
				}
			})
		case Finish, Drain:
			final := draining && p.Step < a.StopStep
			ch, err := tr.Checkpoint(g.ctx)
			if err != nil {
				return endFailed, fmt.Errorf("checkpoint at step %d: %w", p.Step, err)
			}
			var r trainer.CheckpointResult
			select {
			case r = <-ch:
			case <-g.ctx.Done():
				return endFailed, fmt.Errorf("waiting for the checkpoint at step %d: %w", p.Step, g.ctx.Err())
			}
			collect(r)
			if !final {
				if r.Err != nil {
					return endFailed, r.Err
				}
				return endFinished, nil
			}
			// Every rank learns whether rank 0 committed the drain
			// checkpoint before the draining rank leaves (its lease going
			// away starts the next generation).
			committed, err := g.agree(comm, r.Err == nil && !r.Skipped)
			if err != nil {
				return endFailed, fmt.Errorf("after the drain checkpoint at step %d: %w", p.Step, err)
			}
			log.Info("stopping for a drain", "step", p.Step, "checkpoint_committed", committed, "draining_here", g.drainReq.Load())
			if g.drainReq.Load() {
				return endDrained, nil
			}
			return endFinished, nil
		}
	}
}

// vote tells every rank whether any of them is draining: a one-element
// all-reduce after every step, so that all ranks stop at the same step.
func (g *generation) vote(comm *collective.Comm) (bool, error) {
	return g.agree(comm, g.drainReq.Load())
}

// agree returns whether flag is set on any rank.
func (g *generation) agree(comm *collective.Comm, flag bool) (bool, error) {
	if comm == nil {
		return flag, nil
	}
	buf := []float32{0}
	if flag {
		buf[0] = 1
	}
	if err := comm.AllReduce(g.ctx, buf, collective.Sum); err != nil {
		return false, err
	}
	return buf[0] > 0, nil
}

func progressRequest(id string, a *loompb.Assignment, p trainer.Progress) *loompb.ReportProgressRequest {
	losses := make(map[string]float64, len(p.Terms)+1)
	for k, v := range p.Terms {
		losses[k] = v
	}
	losses["loss"] = p.Loss
	return &loompb.ReportProgressRequest{WorkerId: id, Job: a.Job, Generation: a.Generation, Step: p.Step, Losses: losses,
		TokensPerSec: p.TokensPerSec, StepTimeSeconds: p.StepTime.Seconds(), SamplesConsumed: p.Samples}
}

// stepMetrics is one step's scalars for the job's metric history
// (rank 0 sends them with its progress reports).
func stepMetrics(p trainer.Progress, now time.Time) *loompb.StepMetrics {
	v := make(map[string]float64, len(p.Terms)+8)
	for k, x := range p.Terms {
		v[k] = x
	}
	v["loss"] = p.Loss
	v["lr"] = p.LR
	v["grad_norm"] = p.GradNorm
	v["tokens_per_sec"] = p.TokensPerSec
	v["step_time"] = p.StepTime.Seconds()
	v["comm_wait"] = p.CommWait.Seconds()
	v["data_wait"] = p.DataWait.Seconds()
	for k, x := range p.Eval {
		v[k] = x
	}
	return &loompb.StepMetrics{Step: p.Step, Stage: int32(p.Stage), UnixMs: now.UnixMilli(), Values: v}
}

// maxStepRecords is how many steps' metrics a worker holds until the
// coordinator confirms them (coordinator.MaxStepRecords): when the
// coordinator stays away longer, the oldest are dropped.
const maxStepRecords = 256

// reporter sends the latest progress report; older unsent ones are
// superseded, so a slow coordinator never holds up training. Rank 0's step
// metrics stay with the reporter until a report (or a checkpoint commit)
// that carried them is confirmed: every report carries all of them, and
// the history ignores the ones it holds already.
type reporter struct {
	mu      sync.Mutex
	pending *loompb.ReportProgressRequest
	// last is the newest report put: step metrics still unconfirmed after
	// it was sent go out in a copy of it when no newer report comes.
	last  *loompb.ReportProgressRequest
	steps []*loompb.StepMetrics // unconfirmed, in step order
	sent  int64                 // newest step of steps already sent once
	wake  chan struct{}
}

func (r *reporter) put(req *loompb.ReportProgressRequest, rec *loompb.StepMetrics) {
	r.mu.Lock()
	r.pending, r.last = req, req
	if rec != nil {
		r.steps = append(r.steps, rec)
		if n := len(r.steps); n > maxStepRecords {
			r.steps = append([]*loompb.StepMetrics(nil), r.steps[n-maxStepRecords:]...)
		}
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take returns the pending report carrying the unconfirmed step metrics:
// the pending one, or a copy of the last one when only unsent metrics are
// left; nil when there is nothing new to send.
func (r *reporter) take() *loompb.ReportProgressRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	req := r.pending
	r.pending = nil
	newest := int64(0)
	if n := len(r.steps); n > 0 {
		newest = r.steps[n-1].Step
	}
	if req == nil && newest > r.sent && r.last != nil {
		req = r.last
	}
	if req != nil {
		// A copy: the report put stays as it was (Commit sends it too,
		// from another goroutine).
		req = proto.CloneOf(req)
		req.Steps = append([]*loompb.StepMetrics(nil), r.steps...)
		r.sent = max(r.sent, newest)
	}
	return req
}

// unconfirmed returns a copy of the step metrics not yet confirmed.
func (r *reporter) unconfirmed() []*loompb.StepMetrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*loompb.StepMetrics(nil), r.steps...)
}

// failed says a report did not get through: its step metrics are to be
// sent again even if no newer report comes.
func (r *reporter) failed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = 0
}

// confirm drops the step metrics up to step: the history holds them.
func (r *reporter) confirm(step int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := 0
	for i < len(r.steps) && r.steps[i].Step <= step {
		i++
	}
	r.steps = append([]*loompb.StepMetrics(nil), r.steps[i:]...)
}

// sendPending sends the pending report, if any. Sends are serialised, so
// that step metrics reach the coordinator in step order.
func (g *generation) sendPending(ctx context.Context) {
	g.sendMu.Lock()
	defer g.sendMu.Unlock()
	if req := g.rep.take(); req != nil {
		g.send(ctx, req)
	}
}

// send sends one report (with sendMu held).
func (g *generation) send(ctx context.Context, req *loompb.ReportProgressRequest) {
	err := g.ag.cfg.Coordinator.ReportProgress(ctx, req)
	switch {
	case err == nil:
		g.ag.metrics.reports.WithLabelValues("ok").Inc()
		if n := len(req.Steps); n > 0 {
			g.rep.confirm(req.Steps[n-1].Step)
		}
	case status.Code(err) == codes.FailedPrecondition:
		g.ag.metrics.reports.WithLabelValues("stale").Inc()
		g.markStale(err)
	default:
		g.ag.metrics.reports.WithLabelValues("error").Inc()
		g.rep.failed()
		if !errors.Is(err, context.Canceled) {
			g.ag.log.Debug("progress report dropped", "step", req.Step, "err", err)
		}
	}
}

func (g *generation) report() {
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-g.rep.wake:
			g.sendPending(g.ctx)
		}
	}
}
