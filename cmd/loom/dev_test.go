package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/devcluster"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
	"github.com/loomtrain/loom/trainer"
)

// TestDevEndToEnd runs `loom dev` at the tiny size with short stages: it
// must train every stage, evaluate, and remove its data dir at exit.
func TestDevEndToEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	cmd := exec.Command(loomBinary, "dev", "--size", "tiny", "--first-steps", "30", "--steps", "4", "--pretrain-steps", "6", "--batch", "8", "--lr", "5e-3",
		"--samples", "64", "--eval-samples", "8", "--data-dir", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("loom dev: %v\n%s", err, out)
	}
	// The model learned: 30 steps of stage 1 at the tiny size take the
	// held-out caption loss (ITG) from about 5.6 to about 3.9 (seeds 1-3);
	// retrieval at 8 pairs is too coarse to assert on.
	before := regexp.MustCompile(`stage representation, untrained:.*caption loss ([0-9.]+)`).FindSubmatch(out)
	after := regexp.MustCompile(`stage representation, trained:.*caption loss ([0-9.]+)`).FindSubmatch(out)
	if before == nil || after == nil {
		t.Errorf("loom dev output lacks the held-out caption loss before and after stage 1:\n%s", out)
	} else {
		b, _ := strconv.ParseFloat(string(before[1]), 64)
		a, _ := strconv.ParseFloat(string(after[1]), 64)
		if a > b-1 {
			t.Errorf("held-out caption loss after stage 1: got %.3f, want at least 1 below the untrained %.3f\n%s", a, b, out)
		}
	}
	for _, want := range []string{"text pretraining: blip2-tiny-text trains the tiny LLM on synthetic text for 6 steps; blip2-tiny starts its LLM from it",
		"job blip2-tiny-text succeeded: 6 steps", "stage 1/2 representation", "stage 2/2 generative", "job blip2-tiny succeeded: 34 steps",
		"held-out retrieval, stage representation, trained", "  coordinator  127.0.0.1:", "checkpoints in s3://loom/checkpoints/blip2-tiny/"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("loom dev output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir %s still exists after loom dev (stat: %v)", dir, err)
	}
}

// TestDevKeptDataDir runs `loom dev` twice on one kept --data-dir: the
// second run reuses the text-pretraining job that succeeded in the first
// and trains the recipe's job again under a new name, where it failed
// with AlreadyExists (issue 15).
func TestDevKeptDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("runs loom dev twice")
	}
	dir := filepath.Join(t.TempDir(), "dev")
	dev := func() string {
		t.Helper()
		out, err := exec.Command(loomBinary, "dev", "--recipe", "vila", "--steps", "2", "--pretrain-steps", "2", "--batch", "4",
			"--samples", "32", "--eval-samples", "0", "--workers", "1", "--data-dir", dir, "--keep").CombinedOutput()
		if err != nil {
			t.Fatalf("loom dev --data-dir %s --keep: %v\n%s", dir, err, out)
		}
		return string(out)
	}
	dev()
	out := dev()
	for _, want := range []string{"job          vila-tiny-text: succeeded in this data dir already (2 steps); using its checkpoints",
		"job          vila-tiny-2: 3 stages", "job vila-tiny-2 succeeded: 6 steps"} {
		if !strings.Contains(out, want) {
			t.Errorf("second loom dev on a kept data dir: output lacks %q:\n%s", want, out)
		}
	}
}

// TestDevOwnDataKeepRunning trains VILA on a local image folder given
// with --data and keeps the cluster up (--keep-running): the printed
// export line reaches it from loom status and loom logs, and Ctrl-C
// stops it (issue 15 part 4).
func TestDevOwnDataKeepRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("runs loom dev")
	}
	src := t.TempDir()
	var jl strings.Builder
	for i := range 24 {
		smp := synth.Sample(shard.KindImageText, 5, i)
		name := fmt.Sprintf("%02d.png", i)
		if err := os.WriteFile(filepath.Join(src, name), smp.Image.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&jl, `{"image": %q, "caption": %q, "label": %d}`+"\n", name, smp.Caption, i%3)
	}
	os.WriteFile(filepath.Join(src, "captions.jsonl"), []byte(jl.String()), 0o644)
	cmd := exec.Command(loomBinary, "dev", "--recipe", "vila", "--steps", "2", "--pretrain-steps", "0", "--batch", "4", "--samples", "32",
		"--workers", "1", "--data", src, "--keep-running")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	var log bytes.Buffer
	env := make(chan []string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		var vars []string
		for sc.Scan() {
			line := sc.Text()
			log.WriteString(line + "\n")
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "export "); ok {
				vars = append(vars, strings.Fields(rest)...)
				if strings.Contains(rest, "LOOM_S3_ENDPOINT") {
					env <- vars
				}
			}
		}
	}()
	var vars []string
	select {
	case vars = <-env:
	case err := <-done:
		<-scanned
		t.Fatalf("loom dev --keep-running exited (%v) before printing the export lines\n%s", err, log.String())
	case <-time.After(120 * time.Second):
		t.Fatalf("loom dev --keep-running printed no export lines\n%s", log.String())
	}
	loom := func(args ...string) string {
		t.Helper()
		c := exec.Command(loomBinary, args...)
		c.Env = append(os.Environ(), vars...)
		b, err := c.CombinedOutput()
		if err != nil {
			t.Errorf("loom %v with the printed exports: %v\n%s", args, err, b)
		}
		return string(b)
	}
	if got := loom("status"); !strings.Contains(got, "vila-tiny") || !strings.Contains(got, "succeeded") {
		t.Errorf("loom status on the kept cluster:\n%s", got)
	}
	if got := loom("logs", "vila-tiny", "--rank", "0"); !strings.Contains(got, "starting generation") {
		t.Errorf("loom logs on the kept cluster:\n%s", got)
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		<-scanned
		if err != nil {
			t.Errorf("loom dev --keep-running after Ctrl-C: %v\n%s", err, log.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("loom dev --keep-running did not stop after Ctrl-C\n%s", log.String())
	}
	for _, want := range []string{"s3://loom/datasets/data: 24 image-text rows from " + src, "kept fields label of the input", "job vila-tiny succeeded: 6 steps",
		"export LOOM_COORDINATOR=127.0.0.1:"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("loom dev --data --keep-running output lacks %q:\n%s", want, log.String())
		}
	}
	if strings.Contains(log.String(), "held-out retrieval") {
		t.Errorf("loom dev --data evaluated on synthetic pairs without --eval-samples:\n%s", log.String())
	}
}

// TestDevManifest trains a manifest of one's own with loom dev --manifest.
func TestDevManifest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs loom dev")
	}
	m, err := trainer.ExampleManifest("vila", "tiny", func(k shard.Kind) string { return "s3://loom/datasets/" + string(k) }, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	m.Name = "mine"
	m.Stages = m.Stages[:1]
	m.Elastic = api.Elastic{Min: 1, Max: 1}
	y, err := m.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "mine.yaml")
	os.WriteFile(file, y, 0o644)
	out, err := exec.Command(loomBinary, "dev", "--manifest", file, "--workers", "1", "--samples", "32").CombinedOutput()
	if err != nil {
		t.Fatalf("loom dev --manifest: %v\n%s", err, out)
	}
	for _, want := range []string{"loom dev: mine (vila, 1 stages, 2 steps) from " + file, "job mine succeeded: 2 steps", "synthetic samples per kind: image-text"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("loom dev --manifest output lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(loomBinary, "dev", "--manifest", file, "--workers", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--workers 0") {
		t.Errorf("loom dev --manifest --workers 0: %v\n%s", err, out)
	}
}

// TestDevInterrupt sends Ctrl-C (SIGINT) to `loom dev` while its workers
// train: every process it started must be gone, and its data dir removed.
func TestDevInterrupt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	cmd := exec.Command(loomBinary, "dev", "--size", "tiny", "--first-steps", "100000", "--pretrain-steps", "4", "--samples", "64", "--data-dir", dir)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	// The scanner goroutine owns pids and log until scanned is closed.
	var pids []int
	var log bytes.Buffer
	training := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		pidRE := regexp.MustCompile(`worker \w+ +pid (\d+)`)
		stepRE := regexp.MustCompile(`representation step \d+/`)
		once := false
		for sc.Scan() {
			line := sc.Text()
			log.WriteString(line + "\n")
			if m := pidRE.FindStringSubmatch(line); m != nil {
				p, _ := strconv.Atoi(m[1])
				pids = append(pids, p)
			}
			if !once && stepRE.MatchString(line) {
				once = true
				close(training)
			}
		}
	}()
	wait := func() string {
		<-done
		<-scanned
		return log.String()
	}
	select {
	case <-training:
	case <-done:
		t.Fatalf("loom dev exited before training\n%s", wait())
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("loom dev did not start training\n%s", wait())
	}
	// Ctrl-C at a terminal goes to the foreground process group; loom dev
	// keeps its children in their own groups, so it alone gets it.
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
		done <- nil
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("loom dev did not stop after SIGINT\n%s", wait())
	}
	out := wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("loom dev exit status after SIGINT: %d, want 130", code)
	}
	if len(pids) != 2 {
		t.Fatalf("worker pids: %v, want 2\n%s", pids, out)
	}
	for _, p := range pids {
		if err := syscall.Kill(p, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("worker pid %d still exists after loom dev exited (kill -0: %v)", p, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir %s still exists (stat: %v)", dir, err)
	}
}

// stepRecord is one worker's "step" log line.
type stepRecord struct {
	Msg        string   `json:"msg"`
	Worker     string   `json:"worker"`
	Job        string   `json:"job"`
	Generation int64    `json:"generation"`
	Rank       int      `json:"rank"`
	Step       int64    `json:"step"`
	SampleIDs  []string `json:"sample_ids"`
}

// sampleLog reads every worker log of the cluster and returns, for job,
// the samples each global step trained on in the generation that ran it
// last (the lineage that survives a restart), ranks concatenated in order.
func sampleLog(t *testing.T, c *devcluster.Cluster, job string, world int) map[int64][]string {
	t.Helper()
	type key struct {
		step, gen int64
	}
	byGen := map[key]map[int][]string{}
	files, _ := filepath.Glob(filepath.Join(c.LogDir(), "w*.log"))
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
			continue // a generation cut short mid-step on some rank
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

// finalTensors returns tensor name → sha256 of the job's final checkpoint.
func finalTensors(t *testing.T, c *devcluster.Cluster, j *loompb.Job) map[string]string {
	t.Helper()
	var final *loompb.Checkpoint
	for _, cp := range j.Checkpoints {
		if cp.Step == j.TotalSteps {
			final = cp
		}
	}
	if final == nil {
		t.Fatalf("job %s: no committed checkpoint at its last step %d", j.Name, j.TotalSteps)
	}
	ref, err := devcluster.RestoreOf(final)
	if err != nil {
		t.Fatal(err)
	}
	man, err := trainer.ReadCheckpoint(context.Background(), c.Store(), *ref)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range man.Files {
		for name, sum := range f.Tensors {
			out[f.Role+"/"+name] = sum
		}
	}
	return out
}

func waitJob(t *testing.T, c *devcluster.Cluster, name string, within time.Duration, cond func(*loompb.Job) bool) *loompb.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j, err := c.GetJob(context.Background(), name)
		if err == nil && cond(j) {
			return j
		}
		if err == nil && (j.State == "failed" || j.State == "cancelled") {
			t.Fatalf("job %s %s: %s", name, j.State, j.Message)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: condition not met within %s (last: %v, err %v)", name, within, j, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastCheckpoint(j *loompb.Job) int64 {
	if len(j.Checkpoints) == 0 {
		return 0
	}
	return j.Checkpoints[len(j.Checkpoints)-1].Step
}

// TestResume runs one job uninterrupted as the reference, then the same
// job three times with a failure in the middle: a worker killed with
// SIGKILL, the coordinator leader killed with SIGKILL, and a worker sent
// SIGTERM (drain). Each must end with exactly the reference's weights and
// optimizer state, and its sample log must show every step's samples as
// in the reference: none twice, none skipped.
func TestResume(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level resume tests (about a minute)")
	}
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Bin: loomBinary, Coordinators: 3, LeaseTTL: 3 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			keep := filepath.Join(os.TempDir(), "loom-resume-logs")
			os.RemoveAll(keep)
			exec.Command("cp", "-r", filepath.Join(c.LogDir()), keep).Run()
			t.Logf("process logs copied to %s", keep)
		}
		if err := c.Close(); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
	}()
	uri, err := c.WriteData(ctx, "blip2", 512)
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	spawn := func() *devcluster.Proc {
		p, err := c.StartWorker(fmt.Sprintf("w%d", next))
		if err != nil {
			t.Fatal(err)
		}
		next++
		return p
	}
	procs := map[string]*devcluster.Proc{}
	for i := 0; i < 3; i++ {
		p := spawn()
		procs[p.ID] = p
	}
	const steps, batch = 24, 8
	shardLevel := "" // parallelism.shard of the jobs submitted
	manifest := func(name string) *api.Manifest {
		m, err := devManifest(devFlags{recipe: "blip2", size: "tiny", workers: 2, steps: steps, batch: batch, lr: 2e-3}, uri)
		if err != nil {
			t.Fatal(err)
		}
		m.Name = name
		m.Checkpoint.Interval = 4
		m.Parallelism.Shard = shardLevel
		return m
	}
	run := func(name string, disrupt func(j *loompb.Job)) *loompb.Job {
		t.Helper()
		if _, err := c.Submit(ctx, manifest(name)); err != nil {
			t.Fatal(err)
		}
		if disrupt != nil {
			j := waitJob(t, c, name, 60*time.Second, func(j *loompb.Job) bool { return j.State == "running" && lastCheckpoint(j) >= 6 })
			if lastCheckpoint(j) >= j.TotalSteps-4 {
				t.Fatalf("job %s ran too fast to disrupt mid-run (checkpoint %d of %d)", name, lastCheckpoint(j), j.TotalSteps)
			}
			disrupt(j)
		}
		return waitJob(t, c, name, 120*time.Second, func(j *loompb.Job) bool { return j.State == "succeeded" })
	}
	ref := run("ref", nil)
	refTensors := finalTensors(t, c, ref)
	refSamples := sampleLog(t, c, "ref", 2)
	if len(refTensors) == 0 || int64(len(refSamples)) != ref.TotalSteps {
		t.Fatalf("reference: %d tensors, sample log of %d steps (want %d)", len(refTensors), len(refSamples), ref.TotalSteps)
	}
	checkHistory(t, c, ref)
	check := func(j *loompb.Job) {
		t.Helper()
		checkHistory(t, c, j)
		got := finalTensors(t, c, j)
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
				t.Errorf("job %s: step %d has no complete sample record (skipped?)", j.Name, s)
				continue
			}
			if strings.Join(ids, ",") != strings.Join(refSamples[s], ",") {
				t.Errorf("job %s: step %d trained on %v, the uninterrupted run on %v", j.Name, s, ids, refSamples[s])
			}
			stage := int64(0)
			if s > steps {
				stage = 1
			}
			for _, id := range ids {
				k := fmt.Sprintf("%d/%s", stage, id)
				if prev, dup := seen[k]; dup {
					t.Errorf("job %s: sample %s trained twice in stage %d (steps %d and %d)", j.Name, id, stage, prev, s)
				}
				seen[k] = s
			}
		}
	}

	t.Run("worker-sigkill", func(t *testing.T) {
		var killedAt int64
		j := run("kill-worker", func(j *loompb.Job) {
			victim := procs[j.Workers[1]]
			killedAt = lastCheckpoint(j)
			t.Logf("SIGKILL worker %s (rank 1) at committed step %d", victim.ID, killedAt)
			victim.Cmd.Process.Kill()
			<-victim.Done
			delete(procs, victim.ID)
			p := spawn() // the spare for later scenarios
			procs[p.ID] = p
		})
		if j.Restarts < 1 || j.Generation < 2 {
			t.Errorf("job %s: %d restarts, generation %d; want a new generation after the kill", j.Name, j.Restarts, j.Generation)
		}
		// The next generation resumed from a committed checkpoint at or
		// after the one committed before the kill, not from the start.
		from := resumedFrom(t, c, j.Name)
		t.Logf("stage-0 generations after the kill started from steps %v", from)
		if len(from) == 0 || from[0] < killedAt {
			t.Errorf("job %s: later generations started from steps %v; want the first at or after %d", j.Name, from, killedAt)
		}
		check(j)
	})
	t.Run("leader-sigkill", func(t *testing.T) {
		j := run("kill-leader", func(j *loompb.Job) {
			leader, err := c.WaitLeader(ctx, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("SIGKILL coordinator leader %s at committed step %d", leader.ID, lastCheckpoint(j))
			leader.Cmd.Process.Kill()
			<-leader.Done
			if _, err := c.WaitLeader(ctx, 30*time.Second); err != nil {
				t.Fatal(err)
			}
		})
		check(j)
	})
	t.Run("worker-sigterm-drain", func(t *testing.T) {
		var victim *devcluster.Proc
		j := run("drain-worker", func(j *loompb.Job) {
			victim = procs[j.Workers[0]]
			t.Logf("SIGTERM worker %s (rank 0) at committed step %d", victim.ID, lastCheckpoint(j))
			victim.Cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-victim.Done:
			case <-time.After(60 * time.Second):
				t.Fatalf("worker %s did not exit after SIGTERM", victim.ID)
			}
			if victim.ExitCode != 0 {
				t.Errorf("worker %s exit status after SIGTERM: %d (%v), want 0", victim.ID, victim.ExitCode, victim.ExitErr)
			}
		})
		// The drained worker committed the step it stopped at.
		b, _ := os.ReadFile(victim.LogPath)
		m := regexp.MustCompile(`"msg":"stopping for a drain"[^\n]*"step":(\d+),"checkpoint_committed":true`).FindSubmatch(b)
		if m == nil {
			// A SIGTERM in a stage's last steps lets the generation finish
			// the stage, whose final checkpoint is the drain's.
			m = regexp.MustCompile(`"msg":"drained"[^\n]*"job":"drain-worker","step":(\d+),"checkpoint":(\d+)`).FindSubmatch(b)
			if m != nil && string(m[1]) != string(m[2]) {
				t.Fatalf("worker %s drained at step %s with its last commit at step %s", victim.ID, m[1], m[2])
			}
		}
		if m == nil {
			t.Fatalf("worker %s log has no committed drain checkpoint", victim.ID)
		}
		step, _ := strconv.ParseInt(string(m[1]), 10, 64)
		var steps []int64
		for _, cp := range j.Checkpoints {
			steps = append(steps, cp.Step)
		}
		t.Logf("drained at step %d; committed checkpoints %v", step, steps)
		if !containsStep(j, step) && !drainCommitEvent(c, j.Name, step) {
			t.Errorf("drain checkpoint at step %d is not among the job's committed checkpoints", step)
		}
		check(j)
	})
	// ZeRO stage 2 (docs/parallelism.md): the moments and reduced
	// gradients sharded across the ranks, gathered whole at each
	// checkpoint. A worker killed mid-run ends with exactly the weights and
	// moments of an uninterrupted ZeRO-2 run.
	t.Run("worker-sigkill-zero2", func(t *testing.T) {
		shardLevel = "gradients"
		zref := run("zero-ref", nil)
		refTensors, refSamples = finalTensors(t, c, zref), sampleLog(t, c, "zero-ref", 2)
		j := run("zero-kill-worker", func(j *loompb.Job) {
			victim := procs[j.Workers[1]]
			t.Logf("SIGKILL worker %s (rank 1) of a ZeRO-2 job at committed step %d", victim.ID, lastCheckpoint(j))
			victim.Cmd.Process.Kill()
			<-victim.Done
			delete(procs, victim.ID)
			p := spawn() // the drained worker above is gone too
			procs[p.ID] = p
		})
		if j.Restarts < 1 || j.Generation < 2 {
			t.Errorf("job %s: %d restarts, generation %d; want a new generation after the kill", j.Name, j.Restarts, j.Generation)
		}
		check(j)
	})
}

// resumedFrom returns the checkpoint steps the job's stage-0 generations
// after the first started from, as the workers logged them (-1 for a
// generation that started from the initialisation instead).
func resumedFrom(t *testing.T, c *devcluster.Cluster, job string) []int64 {
	t.Helper()
	re := regexp.MustCompile(`"msg":"starting generation".*"job":"` + regexp.QuoteMeta(job) +
		`","generation":(\d+).*"stage":"representation".*"from":"([^"]*)"`)
	var out []int64
	files, _ := filepath.Glob(filepath.Join(c.LogDir(), "w*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, m := range re.FindAllSubmatch(b, -1) {
			if string(m[1]) == "1" {
				continue
			}
			n := int64(-1)
			if rest, ok := strings.CutPrefix(string(m[2]), "checkpoint at step "); ok {
				n, _ = strconv.ParseInt(rest, 10, 64)
			}
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func containsStep(j *loompb.Job, step int64) bool {
	for _, cp := range j.Checkpoints {
		if cp.Step == step {
			return true
		}
	}
	return false
}

// drainCommitEvent reports whether the job's events record a commit at
// step (retention may have retired the checkpoint since).
func drainCommitEvent(c *devcluster.Cluster, job string, step int64) bool {
	cc, err := c.Dial()
	if err != nil {
		return false
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := loompb.NewJobsClient(cc).WatchJob(ctx, &loompb.WatchJobRequest{Job: job})
	if err != nil {
		return false
	}
	want := fmt.Sprintf("committed step %d ", step)
	for {
		ev, err := s.Recv()
		if err != nil {
			return false
		}
		if ev.Kind == "checkpoint" && strings.HasPrefix(ev.Message, want) {
			return true
		}
	}
}
