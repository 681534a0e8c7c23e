package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/devcluster"
	"github.com/loomtrain/loom/shard"
)

// TestFailurePolicyEndToEnd runs the failure policy of issue 16 part 5 on
// real processes. A job whose newest checkpoint is corrupted while its
// only worker is down falls back to the checkpoint before, without
// spending a restart on it, finishes, and lists the corrupt one in loom
// status. A job whose data has a flipped byte fails at once, naming the
// shard object, with its restarts unspent.
func TestFailurePolicyEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level failure policy test")
	}
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Bin: loomBinary, Coordinators: 1, LeaseTTL: 2 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uri, err := c.WriteData(ctx, "blip2", 128)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.StartWorker("w0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := devManifest(devFlags{recipe: "blip2", size: "tiny", workers: 1, steps: 12, batch: 8, lr: 2e-3}, uri)
	if err != nil {
		t.Fatal(err)
	}
	m.Name = "fallback"
	m.Checkpoint.Interval = 4
	if _, err := c.Submit(ctx, m); err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, m.Name, 90*time.Second, func(j *loompb.Job) bool { return j.State == "running" && lastCheckpoint(j) >= 8 })
	w.Cmd.Process.Kill()
	<-w.Done
	j, err := c.GetJob(ctx, m.Name)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != "running" || len(j.Checkpoints) < 2 {
		t.Fatalf("job %s after killing its worker: %s with checkpoints %v; want running with two or more", j.Name, j.State, j.Checkpoints)
	}
	bad, prev := j.Checkpoints[len(j.Checkpoints)-1], j.Checkpoints[len(j.Checkpoints)-2]
	var victim string
	for _, o := range bad.Objects {
		if strings.Contains(o.Path, "/model") {
			victim = strings.TrimPrefix(o.Path, "s3://"+devcluster.Bucket+"/")
		}
	}
	if victim == "" {
		t.Fatalf("checkpoint at step %d has no model object: %v", bad.Step, bad.Objects)
	}
	flipByte(t, c.Store(), victim, -1)
	t.Logf("worker killed at committed step %d; flipped a byte of %s", bad.Step, victim)
	if w, err = c.StartWorker("w0"); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, c, m.Name, 180*time.Second, func(j *loompb.Job) bool { return j.State == "succeeded" || j.State == "failed" })
	if j.State != "succeeded" {
		t.Fatalf("job %s: %s (%s); want it to fall back from the corrupt checkpoint and finish", j.Name, j.State, j.Message)
	}
	if len(j.CorruptCheckpoints) != 1 || j.CorruptCheckpoints[0].Step != bad.Step || !strings.Contains(j.CorruptCheckpoints[0].Corrupt, victim) {
		t.Errorf("corrupt checkpoints %v; want step %d, naming %s", j.CorruptCheckpoints, bad.Step, victim)
	}
	var fellBack bool
	for _, g := range j.History {
		fellBack = fellBack || (g.Restart && g.RestoreStep == prev.Step && strings.Contains(g.Reason, "is corrupt"))
	}
	if !fellBack {
		t.Errorf("no generation restarted from step %d after the corrupt checkpoint: %v", prev.Step, j.History)
	}
	// The kill costs a restart; the fall-back does not.
	if j.Restarts != 1 {
		t.Errorf("job %s finished with %d restarts, want 1 (the kill; a fall-back is not counted)", j.Name, j.Restarts)
	}
	out, err := exec.Command(loomBinary, "status", "--coordinator", c.APIs()[0], m.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("loom status: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "corrupt     step ") || !strings.Contains(string(out), victim) {
		t.Errorf("loom status %s does not show the corrupt checkpoint:\n%s", m.Name, out)
	}

	// Corrupt data: one flipped byte inside a batch of the dataset, read
	// by a new worker (w0's disk cache holds the intact bytes).
	w.Stop(syscall.SIGTERM, 30*time.Second)
	if _, err := c.StartWorker("w1"); err != nil {
		t.Fatal(err)
	}
	r, err := shard.OpenReader(ctx, c.Store(), "datasets/"+string(shard.KindImageText), shard.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	si := r.Index().Shards[0]
	r.Close()
	obj := "datasets/" + string(shard.KindImageText) + "/" + si.Key
	flipByte(t, c.Store(), obj, si.Batches[0].Offset+si.Batches[0].Length/2)
	m.Name = "corrupt-data"
	if _, err := c.Submit(ctx, m); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, c, m.Name, 120*time.Second, func(j *loompb.Job) bool { return j.State == "succeeded" || j.State == "failed" })
	if j.State != "failed" || j.Restarts != 0 || !strings.Contains(j.Message, obj) || !strings.Contains(j.Message, "crc32c") {
		t.Errorf("job %s on corrupt data: %s after %d restarts: %q; want failed at once, naming %s and its crc32c", j.Name, j.State, j.Restarts, j.Message, obj)
	}
}

// flipByte inverts one byte of an object (at off; -1: the middle).
func flipByte(t *testing.T, store shard.ObjectStore, key string, off int64) {
	t.Helper()
	ctx := context.Background()
	b, err := store.GetRange(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off = int64(len(b) / 2)
	}
	b[off] ^= 0xff
	if err := store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}
