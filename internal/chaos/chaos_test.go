package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/devcluster"
	"github.com/loomtrain/loom/internal/s3server"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
	"github.com/loomtrain/loom/trainer"
)

var (
	long     = flag.Bool("chaos.long", false, "run the long form: several seeds, every fault kind, a longer job (make chaos)")
	seedList = flag.String("chaos.seeds", "", "comma-separated seeds (default: 1 for the short form, 1,2,3 for the long form)")
	kindList = flag.String("chaos.kinds", "", "comma-separated fault kinds, or all (default: a few for the short form, all for the long form)")
	faultsN  = flag.Int("chaos.faults", 0, "faults per seed (default: 4 short, 12 long)")
	stepsN   = flag.Int64("chaos.steps", 0, "steps per stage of the job (two stages; default: 150 short, 1200 long)")
	keepLogs = flag.String("chaos.logs", "", "copy the process logs here at the end (default: $TMPDIR/loom-chaos-logs when the run fails)")
)

// shortKinds are the short form's faults: one of each process kind's
// commonest failure and the S3 faults.
var shortKinds = []Kind{KillWorker, KillCoordinator, S3Errors, PartitionCoordinator}

// dataRows is the size of each synthetic dataset.
const dataRows = 512

type form struct {
	seeds       []uint64
	kinds       []Kind
	faults      int
	stageSteps  int64 // steps per stage (blip2 has two)
	within      time.Duration
	stallGrace  time.Duration
	leaseTTL    time.Duration
	recoverTime time.Duration // the most one fault may take to recover
}

func chosenForm(t *testing.T) form {
	f := form{seeds: []uint64{1}, kinds: shortKinds, faults: 4, stageSteps: 150, within: 150 * time.Second,
		stallGrace: 4 * time.Second, leaseTTL: 5 * time.Second, recoverTime: 90 * time.Second}
	if *long {
		f.seeds, f.kinds, f.faults, f.stageSteps, f.within = []uint64{1, 2, 3}, Kinds, 12, 1200, 40*time.Minute
	}
	if *seedList != "" {
		f.seeds = nil
		for _, s := range strings.Split(*seedList, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				t.Fatalf("-chaos.seeds %q: %v", *seedList, err)
			}
			f.seeds = append(f.seeds, n)
		}
	}
	if *kindList != "" {
		ks, err := ParseKinds(*kindList)
		if err != nil {
			t.Fatal(err)
		}
		f.kinds = ks
	}
	if *faultsN > 0 {
		f.faults = *faultsN
	}
	if *stepsN > 0 {
		f.stageSteps = *stepsN
	}
	return f
}

func buildLoom(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "loom")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/loomtrain/loom/cmd/loom")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build loom: %v\n%s", err, out)
	}
	return bin
}

// TestChaos plays seeded fault schedules against a cluster of real
// processes. Each seed's job must end with the final weights of an
// uninterrupted run of the same job, bit for bit, and a sample log that
// shows every step's samples as in that run: none lost, none repeated.
// It prints, per fault kind, the faults injected and survived and the
// time to recover.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: a cluster of real processes under faults (about two minutes)")
	}
	if _, err := s3server.FindVersity(); err != nil {
		t.Skipf("chaos: %v", err)
	}
	f := chosenForm(t)
	start := time.Now()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "loom-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildLoom(t)
	c, err := startCluster(ctx, clusterOptions{dir: dir, bin: bin, workers: 3, leaseTTL: f.leaseTTL, s3Seed: f.seeds[0], tmpfsSize: "64m", coordinators: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.close()
		keep := *keepLogs
		if keep == "" && t.Failed() {
			keep = filepath.Join(os.TempDir(), "loom-chaos-logs")
		}
		if keep != "" {
			os.RemoveAll(keep)
			exec.Command("cp", "-r", filepath.Join(dir, "logs"), keep).Run()
			t.Logf("process logs copied to %s", keep)
		}
		os.RemoveAll(dir)
	}()
	if c.tmpfs != "" {
		t.Logf("coordinator-disk-full is not available here: %s", c.tmpfs)
	}
	uri, err := writeData(ctx, c, "blip2", dataRows)
	if err != nil {
		t.Fatal(err)
	}
	manifest := func(name string) *api.Manifest {
		m, err := trainer.ExampleManifest("blip2", "tiny", uri, f.stageSteps, 8)
		if err != nil {
			t.Fatal(err)
		}
		m.Name = name
		m.Elastic = api.Elastic{Min: 2, Max: 2}
		m.Checkpoint.Interval = 10
		m.Checkpoint.Keep = 2
		m.Failure.StallGrace = api.Duration(f.stallGrace)
		m.Failure.MaxRestarts = 1000
		lr := 2e-3
		for i := range m.Stages {
			m.Stages[i].Overrides.LR = &lr
		}
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	deadline := start.Add(f.within)
	if err := c.submit(ctx, manifest("ref")); err != nil {
		t.Fatal(err)
	}
	ref, err := waitJob(ctx, c, "ref", time.Until(deadline), func(j *loompb.Job) bool { return j.State == "succeeded" })
	if err != nil {
		t.Fatal(err)
	}
	refTensors, err := finalTensors(ctx, c, ref)
	if err != nil {
		t.Fatal(err)
	}
	refSamples := sampleLog(t, c, "ref", 2)
	if len(refTensors) == 0 || int64(len(refSamples)) != ref.TotalSteps {
		t.Fatalf("reference: %d tensors, sample log of %d steps (want %d)", len(refTensors), len(refSamples), ref.TotalSteps)
	}
	t.Logf("reference run: %d steps in %s", ref.TotalSteps, time.Since(start).Round(time.Second))

	var all Report
	for _, seed := range f.seeds {
		name := fmt.Sprintf("chaos-%d", seed)
		plan, err := Plan(seed, Options{Kinds: f.kinds, Faults: f.faults, FirstStep: 3, LastStep: ref.TotalSteps / 2, // the second half is slack for recoveries
			Coordinators: len(c.coords), Workers: 2, // worker faults hit one of the job's two ranks
			Hold: map[Kind]time.Duration{HangWorker: f.stallGrace + f.leaseTTL, DiskFull: 3 * time.Second, PartitionCoordinator: 3 * time.Second,
				S3Errors: 3 * time.Second, DelayRing: 2 * time.Second, DropRing: 2 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		for _, fl := range plan {
			t.Logf("seed %d: scheduled %s", seed, fl)
		}
		c.s3.Reseed(seed)
		if err := c.submit(ctx, manifest(name)); err != nil {
			t.Fatal(err)
		}
		var rep Report
		broken := false
		for _, fl := range plan {
			if broken {
				o := Outcome{Fault: fl, Seed: seed, Skipped: true, Note: "an earlier fault was not survived"}
				rep.Add(o)
				all.Add(o)
				continue
			}
			o := inject(ctx, t, c, name, seed, fl, f.recoverTime, deadline)
			t.Logf("%s seed %d: %s: survived %v, recovered in %s %s", time.Since(start).Round(100*time.Millisecond), seed, fl, o.Survived, o.Recover.Round(100*time.Millisecond), o.Note)
			rep.Add(o)
			all.Add(o)
			broken = !o.Survived && !o.Skipped
		}
		if broken {
			var b strings.Builder
			rep.Print(&b)
			t.Fatalf("seed %d: a fault was not survived; the rest were not injected\n%s", seed, b.String())
		}
		j, err := waitJob(ctx, c, name, time.Until(deadline), func(j *loompb.Job) bool { return j.State == "succeeded" })
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		var b strings.Builder
		rep.Print(&b)
		t.Logf("seed %d: job %s succeeded at generation %d after %d restarts\n%s", seed, name, j.Generation, j.Restarts, b.String())
		checkRun(ctx, t, c, j, refTensors, refSamples, f.stageSteps, dataRows)
	}
	var b strings.Builder
	all.Print(&b)
	t.Logf("chaos: seeds %v, %d faults each, in %s\n%s", f.seeds, f.faults, time.Since(start).Round(time.Second), b.String())
	for _, o := range all.Outcomes {
		switch {
		case !o.Skipped && !o.Survived:
			t.Errorf("seed %d: %s not survived: %s", o.Seed, o.Fault, o.Note)
		case o.Skipped && !o.Unavailable && *long:
			t.Errorf("seed %d: %s not injected: %s (raise -chaos.steps)", o.Seed, o.Fault, o.Note)
		}
	}
}

// inject waits for the fault's step, injects it, heals it after its hold,
// restarts what died, and waits for the job to step past the step it was
// at when the fault hit.
func inject(ctx context.Context, t *testing.T, c *cluster, job string, seed uint64, f Fault, within time.Duration, deadline time.Time) Outcome {
	o := Outcome{Fault: f, Seed: seed}
	if f.Kind == DiskFull && c.tmpfs != "" {
		o.Skipped, o.Unavailable, o.Note = true, true, c.tmpfs
		return o
	}
	j, err := waitJob(ctx, c, job, time.Until(deadline), func(j *loompb.Job) bool { return j.Step >= f.Step || terminal(j.State) })
	if err != nil {
		o.Note = err.Error()
		return o
	}
	if terminal(j.State) {
		o.Skipped, o.Note = true, fmt.Sprintf("the job ended (%s at step %d of %d) before step %d", j.State, j.Step, j.TotalSteps, f.Step)
		return o
	}
	at := j.Step
	// A worker fault hits one of the job's ranks (Target indexes them).
	var w *worker
	if !f.Kind.OnCoordinator() && f.Kind != S3Errors {
		id := j.Workers[f.Target%len(j.Workers)]
		for _, x := range c.workers {
			if x.id == id {
				w = x
			}
		}
		if w == nil {
			o.Note = fmt.Sprintf("rank %d's worker %s is not one of the cluster's", f.Target, id)
			return o
		}
	}
	s3Before := [4]int64{c.s3.Requests.Load(), c.s3.Errors.Load(), c.s3.Resets.Load(), c.s3.Slowed.Load()}
	var logBefore int64
	if f.Kind.OnCoordinator() {
		if st, err := os.Stat(c.coords[f.Target].logPath); err == nil {
			logBefore = st.Size()
		}
	}
	t0 := time.Now()
	var heal func() error
	switch f.Kind {
	case KillCoordinator:
		co := c.coords[f.Target]
		co.kill()
		heal = func() error { return nil } // restarted below with the rest
	case KillWorker:
		w.kill()
		heal = func() error { return nil }
	case HangWorker:
		w.cmd.Process.Signal(syscall.SIGSTOP)
		heal = func() error { return w.cmd.Process.Signal(syscall.SIGCONT) }
	case PartitionCoordinator:
		k := f.Target
		set := func(on bool) {
			for i := range c.links {
				if i != k {
					c.links[i][k].Partition(on)
					c.links[k][i].Partition(on)
				}
			}
		}
		set(true)
		heal = func() error { set(false); return nil }
	case DelayRing:
		p := w.ringProxy
		p.SetDelay(f.Delay)
		heal = func() error { p.SetDelay(0); return nil }
	case DropRing:
		p := w.ringProxy
		p.Partition(true)
		heal = func() error { p.Partition(false); return nil }
	case S3Errors:
		c.s3.SetFaults(S3Faults{Error5xx: 0.1, Reset: 0.05, Slow: 0.1, SlowBy: f.Delay})
		heal = func() error { c.s3.SetFaults(S3Faults{}); return nil }
	case DiskFull:
		path, err := fill(c.coords[f.Target].dir)
		if err != nil {
			os.Remove(path)
			o.Note = fmt.Sprintf("filling %s: %v", c.coords[f.Target].dir, err)
			return o
		}
		heal = func() error { return os.Remove(path) }
	}
	// Recovered: the job has stepped past where the fault found it, in a
	// restarted generation when the fault breaks the ring (a rank killed,
	// hung or cut off), and with the target coordinator back in the
	// cluster (its replica caught up) when it hit a coordinator. A hung
	// rank is routed around while it is still stopped, so that is
	// checked during the hold too.
	r0 := j.Restarts
	breaks := f.Kind == KillWorker || f.Kind == HangWorker
	var recovered time.Duration
	progressed := func(j *loompb.Job) bool {
		if recovered > 0 {
			return true
		}
		ok := j.State == "succeeded" || j.Step > at && (!breaks || j.Restarts > r0)
		if ok && f.Kind.OnCoordinator() {
			mine, err := c.jobAt(ctx, c.coords[f.Target], job)
			ok = err == nil && mine.Generation == j.Generation && mine.Step >= at
		}
		if ok {
			recovered = time.Since(t0)
		}
		return ok
	}
	for end := t0.Add(f.Hold); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if j, err := c.job(ctx, job); err == nil && f.Kind == HangWorker {
			progressed(j)
		}
	}
	if err := heal(); err != nil {
		o.Note = "healing: " + err.Error()
		return o
	}
	switch f.Kind {
	case S3Errors:
		o.Note = fmt.Sprintf("(%d requests: %d 5xx, %d resets, %d slowed)", c.s3.Requests.Load()-s3Before[0],
			c.s3.Errors.Load()-s3Before[1], c.s3.Resets.Load()-s3Before[2], c.s3.Slowed.Load()-s3Before[3])
	case DiskFull:
		o.Note = fmt.Sprintf("(%d log lines of c%d name ENOSPC)", countSince(c.coords[f.Target].logPath, logBefore, "no space left on device"), f.Target)
	}
	// Wait for the recovery, starting again whatever exits meanwhile (a
	// supervisor's job: a process may die of the fault after it is healed).
	var died []string
	if f.Kind == KillCoordinator || f.Kind == KillWorker {
		if _, err := c.restartDead(); err != nil { // the victim
			o.Note = "restarting: " + err.Error()
			return o
		}
	}
	end := time.Now().Add(min(within, time.Until(deadline)))
	for {
		restarted, err := c.restartDead()
		if err != nil {
			o.Note = "restarting: " + err.Error()
			return o
		}
		died = append(died, restarted...)
		if j, err := c.job(ctx, job); err == nil && progressed(j) {
			break
		}
		if time.Now().After(end) {
			o.Note = fmt.Sprintf("no recovery within %s: %s", within, c.describe(ctx, job, f))
			return o
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(died) > 0 {
		o.Note += fmt.Sprintf(" (%s exited after the fault and was started again)", strings.Join(died, ", "))
	}
	if _, err := c.leader(30 * time.Second); err != nil {
		o.Note = err.Error()
		return o
	}
	if last, err := c.job(ctx, job); err == nil {
		o.Restarts = int(last.Restarts - r0)
	}
	o.Survived, o.Recover = true, recovered
	return o
}

// restartDead starts again every coordinator and worker that is not
// running (killed, or exited on its own under a fault) and returns their
// names.
func (c *cluster) restartDead() ([]string, error) {
	var out []string
	for _, co := range c.coords {
		if !co.alive() {
			if err := c.startCoordinator(co); err != nil {
				return out, err
			}
			if err := waitUp(co.proc, co.http, 60*time.Second); err != nil {
				return out, err
			}
			out = append(out, co.id)
		}
	}
	for _, w := range c.workers {
		if !w.alive() {
			if err := c.startWorker(w); err != nil {
				return out, err
			}
			out = append(out, w.id)
		}
	}
	return out, nil
}

// describe says where the job and the fault's target stand, for a fault
// that was not recovered from.
func (c *cluster) describe(ctx context.Context, job string, f Fault) string {
	var parts []string
	if j, err := c.job(ctx, job); err == nil {
		parts = append(parts, fmt.Sprintf("job %s at step %d, generation %d, %s %q", job, j.Step, j.Generation, j.State, j.Message))
	} else {
		parts = append(parts, err.Error())
	}
	if f.Kind.OnCoordinator() {
		co := c.coords[f.Target]
		if j, err := c.jobAt(ctx, co, job); err == nil {
			parts = append(parts, fmt.Sprintf("c%d's replica at step %d, generation %d, %s", co.i, j.Step, j.Generation, j.State))
		} else {
			parts = append(parts, fmt.Sprintf("c%d: %v", co.i, err))
		}
	}
	return strings.Join(parts, "; ")
}

// countSince counts the lines of the file after offset that contain s.
func countSince(path string, offset int64, s string) int {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return 0
	}
	return bytes.Count(b[offset:], []byte(s))
}

func waitJob(ctx context.Context, c *cluster, name string, within time.Duration, cond func(*loompb.Job) bool) (*loompb.Job, error) {
	deadline := time.Now().Add(within)
	var last *loompb.Job
	var lastErr error
	for {
		j, err := c.job(ctx, name)
		if err == nil {
			last = j
			if cond(j) {
				return j, nil
			}
			if j.State == "failed" || j.State == "cancelled" {
				return j, fmt.Errorf("job %s %s: %s", name, j.State, j.Message)
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			return last, fmt.Errorf("job %s: condition not met within %s (last: step %d generation %d %s; err %v)",
				name, within.Round(time.Second), last.GetStep(), last.GetGeneration(), last.GetState(), lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeData(ctx context.Context, c *cluster, recipe string, n int) (func(shard.Kind) string, error) {
	r, err := trainer.Lookup(recipe)
	if err != nil {
		return nil, err
	}
	for _, k := range r.Kinds() {
		prefix := "datasets/" + string(k)
		if _, err := synth.WriteWith(ctx, c.store, prefix, k, n, 7, synth.Options{SceneText: true},
			shard.WriterOptions{Kind: k, ShardBytes: 256 << 10, TempDir: c.dir}); err != nil {
			return nil, fmt.Errorf("generating %s data: %w", k, err)
		}
	}
	return func(k shard.Kind) string { return "s3://" + devcluster.Bucket + "/datasets/" + string(k) }, nil
}

// finalTensors returns tensor name → sha256 of the job's final checkpoint.
func finalTensors(ctx context.Context, c *cluster, j *loompb.Job) (map[string]string, error) {
	var final *loompb.Checkpoint
	for _, cp := range j.Checkpoints {
		if cp.Step == j.TotalSteps {
			final = cp
		}
	}
	if final == nil {
		return nil, fmt.Errorf("job %s: no committed checkpoint at its last step %d", j.Name, j.TotalSteps)
	}
	ref, err := devcluster.RestoreOf(final)
	if err != nil {
		return nil, err
	}
	man, err := trainer.ReadCheckpoint(ctx, c.store, *ref)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range man.Files {
		for name, sum := range f.Tensors {
			out[f.Role+"/"+name] = sum
		}
	}
	return out, nil
}

type stepRecord struct {
	Msg        string   `json:"msg"`
	Job        string   `json:"job"`
	Generation int64    `json:"generation"`
	Rank       int      `json:"rank"`
	Step       int64    `json:"step"`
	SampleIDs  []string `json:"sample_ids"`
}

// sampleLog reads every worker log and returns, for job, the samples each
// global step trained on in the last generation that ran it completely
// (the lineage the final weights descend from), ranks in order.
func sampleLog(t *testing.T, c *cluster, job string, world int) map[int64][]string {
	t.Helper()
	type key struct{ step, gen int64 }
	byGen := map[key]map[int][]string{}
	files, _ := filepath.Glob(filepath.Join(c.dir, "logs", "w*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			if !bytes.Contains(line, []byte(`"sample_ids"`)) {
				continue
			}
			var r stepRecord
			if err := json.Unmarshal(line, &r); err != nil || r.Msg != "step" || r.Job != job {
				continue
			}
			k := key{r.Step, r.Generation}
			if byGen[k] == nil {
				byGen[k] = map[int][]string{}
			}
			byGen[k][r.Rank] = r.SampleIDs
		}
	}
	out := map[int64][]string{}
	last := map[int64]int64{}
	for k, ranks := range byGen {
		if len(ranks) != world {
			continue
		}
		if g, ok := last[k.step]; ok && g > k.gen {
			continue
		}
		last[k.step] = k.gen
		var ids []string
		for r := 0; r < world; r++ {
			ids = append(ids, ranks[r]...)
		}
		out[k.step] = ids
	}
	return out
}

// checkRun compares a finished job with the uninterrupted reference:
// every tensor of the final checkpoint, and every step's samples.
func checkRun(ctx context.Context, t *testing.T, c *cluster, j *loompb.Job, refTensors map[string]string, refSamples map[int64][]string, stageSteps, rows int64) {
	t.Helper()
	got, err := finalTensors(ctx, c, j)
	if err != nil {
		t.Error(err)
		return
	}
	diff := 0
	for name, sum := range refTensors {
		if got[name] != sum {
			diff++
			if diff <= 3 {
				t.Errorf("job %s: final %s differs from the uninterrupted run", j.Name, name)
			}
		}
	}
	if diff > 0 || len(got) != len(refTensors) {
		t.Errorf("job %s: %d of %d tensors differ (%d tensors)", j.Name, diff, len(refTensors), len(got))
	}
	samples := sampleLog(t, c, j.Name, 2)
	seen := map[string]int64{}
	for s := int64(1); s <= j.TotalSteps; s++ {
		ids, ok := samples[s]
		if !ok {
			t.Errorf("job %s: step %d has no complete sample record (lost?)", j.Name, s)
			continue
		}
		if strings.Join(ids, ",") != strings.Join(refSamples[s], ",") {
			t.Errorf("job %s: step %d trained on %v, the uninterrupted run on %v", j.Name, s, ids, refSamples[s])
		}
		// Within one pass over the data (rows samples), no sample twice.
		stage := (s - 1) / stageSteps
		for i, id := range ids {
			pos := int64(i) + (s-1-stage*stageSteps)*int64(len(ids)) // position in the stage
			k := fmt.Sprintf("%d/%d/%s", stage, pos/rows, id)
			if prev, dup := seen[k]; dup {
				t.Errorf("job %s: sample %s trained twice in pass %d of stage %d (steps %d and %d)", j.Name, id, pos/rows, stage, prev, s)
			}
			seen[k] = s
		}
	}
	if !t.Failed() {
		t.Logf("job %s: %d tensors bit-identical to the uninterrupted run; %d steps, each with the reference's samples, none twice", j.Name, len(got), len(samples))
	}
}
