package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

func TestDecide(t *testing.T) {
	run := func(job string, gen int64) *loompb.Assignment { return &loompb.Assignment{Job: job, Generation: gen} }
	idle := &loompb.Assignment{Idle: true}
	for _, tc := range []struct {
		cur  Current
		next *loompb.Assignment
		want Action
	}{
		{Current{}, idle, Keep},
		{Current{}, run("j", 1), Start},
		{Current{"j", 1}, run("j", 1), Keep},
		{Current{"j", 1}, run("j", 2), Replace},
		{Current{"j", 1}, run("k", 1), Replace},
		{Current{"j", 1}, idle, Stop},
	} {
		if got := Decide(tc.cur, tc.next); got != tc.want {
			t.Errorf("Decide(%+v, idle=%v job=%q gen=%d) = %v, want %v", tc.cur, tc.next.Idle, tc.next.Job, tc.next.Generation, got, tc.want)
		}
	}
}

func TestPlanStep(t *testing.T) {
	for _, tc := range []struct {
		step, stop, interval int64
		draining             bool
		want                 StepPlan
	}{
		{1, 10, 4, false, Continue},
		{4, 10, 4, false, Checkpoint},
		{4, 10, 4, true, Drain},
		{3, 10, 4, true, Drain},
		{10, 10, 4, false, Finish},
		{10, 10, 5, true, Finish},
		{7, 10, 0, false, Continue},
	} {
		if got := PlanStep(tc.step, tc.stop, tc.interval, tc.draining); got != tc.want {
			t.Errorf("PlanStep(step %d, stop %d, interval %d, draining %v) = %v, want %v", tc.step, tc.stop, tc.interval, tc.draining, got, tc.want)
		}
	}
}

func TestCheckAssignment(t *testing.T) {
	good := func() *loompb.Assignment {
		return &loompb.Assignment{Job: "j", Generation: 3, Rank: 1, World: 2, StopStep: 10, ManifestYaml: []byte("x"),
			Peers: []*loompb.Peer{{Rank: 0, WorkerId: "a", Addr: "a:1"}, {Rank: 1, WorkerId: "b", Addr: "b:1"}}}
	}
	if err := CheckAssignment("b", good()); err != nil {
		t.Fatalf("CheckAssignment(valid) = %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(a *loompb.Assignment)
		want string
	}{
		{"rank out of range", func(a *loompb.Assignment) { a.Rank = 2 }, "rank 2 outside"},
		{"peers short", func(a *loompb.Assignment) { a.Peers = a.Peers[:1] }, "1 peers for world 2"},
		{"peer without addr", func(a *loompb.Assignment) { a.Peers[0].Addr = "" }, "peers[0] (worker \"a\") has no address"},
		{"peer rank order", func(a *loompb.Assignment) { a.Peers[0].Rank = 1 }, "peers[0].rank is 1"},
		{"not me", func(a *loompb.Assignment) { a.Peers[1].WorkerId = "c" }, "not this worker"},
		{"no manifest", func(a *loompb.Assignment) { a.ManifestYaml = nil }, "manifest_yaml is empty"},
		{"stop before start", func(a *loompb.Assignment) { a.StartStep = 10 }, "stop_step 10 is not after start_step 10"},
	} {
		a := good()
		tc.mod(a)
		err := CheckAssignment("b", a)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `job "j" generation 3`) {
			t.Errorf("CheckAssignment(%s) = %v, want an error naming the job and %q", tc.name, err, tc.want)
		}
	}
}

func TestRestoreRef(t *testing.T) {
	a := &loompb.Assignment{Stage: 1, Restore: &loompb.Checkpoint{Stage: 1, Step: 8, SamplesConsumed: 32,
		Objects: []*loompb.CheckpointObject{{Path: "s3://ck/checkpoints/j/step-8/manifest.json", Sha256: "ab", Size: 3}}}}
	ref, err := RestoreRef(a, "ck")
	if err != nil || ref == nil || ref.Objects[0].Path != "checkpoints/j/step-8/manifest.json" || ref.Samples != 32 {
		t.Fatalf("RestoreRef = %+v, %v; want the key within bucket ck", ref, err)
	}
	if _, err := RestoreRef(a, "other"); err == nil || !strings.Contains(err.Error(), "objects[0]") {
		t.Errorf("RestoreRef(other bucket) = %v, want an error naming objects[0]", err)
	}
	a.Restore.Stage = 0 // the previous stage's final checkpoint: the trainer initialises the stage from it
	if ref, err := RestoreRef(a, "ck"); ref == nil || ref.Stage != 0 || err != nil {
		t.Errorf("RestoreRef(previous stage) = %+v, %v; want the stage-0 checkpoint", ref, err)
	}
	if ref, err := RestoreRef(&loompb.Assignment{}, "ck"); ref != nil || err != nil {
		t.Errorf("RestoreRef(no restore) = %+v, %v; want nil, nil", ref, err)
	}
}

// FuzzRestoreRef checks that every object path the worker commits
// (s3://BUCKET/KEY) converts back to KEY, and that paths outside the bucket
// are refused with the object named.
func FuzzRestoreRef(f *testing.F) {
	f.Add("ck", "checkpoints/j/stage-00/step-8/manifest.json")
	f.Add("b", "")
	f.Add("b", "s3://other/x")
	f.Fuzz(func(t *testing.T, bucket, key string) {
		a := &loompb.Assignment{Restore: &loompb.Checkpoint{Objects: []*loompb.CheckpointObject{{Path: objectPath(bucket, key)}}}}
		ref, err := RestoreRef(a, bucket)
		if key == "" {
			if err == nil {
				t.Fatalf("RestoreRef(%q in %q): no error for an empty key", key, bucket)
			}
			return
		}
		if err != nil || ref.Objects[0].Path != key {
			t.Fatalf("RestoreRef(%q in bucket %q) = %v, %v; want the key back", key, bucket, ref, err)
		}
		if _, err := RestoreRef(a, bucket+"x"); err == nil || !strings.Contains(err.Error(), "objects[0]") {
			t.Fatalf("RestoreRef in another bucket: %v, want an error naming objects[0]", err)
		}
	})
}

func TestReportableFailure(t *testing.T) {
	op := &collective.OpError{Job: "j", Generation: 1, Op: collective.OpAllReduce, Rank: 0, Peer: 1, Dir: "recv from", Err: collective.ErrPeerClosed}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"trainer error", errors.New("step 7: models: NaN in loss"), true},
		{"S3 error", fmt.Errorf("checkpoint at step 10: %w", errors.New("s3 put: 503 slow down")), true},
		{"collective op error", fmt.Errorf("step 3: %w", op), false},
		{"collective sentinel", fmt.Errorf("step 3: %w", collective.ErrAborted), false},
		{"ring connect", &peerError{errors.New("connecting the ring: dial 10.0.0.2: refused")}, false},
		{"cancelled", fmt.Errorf("step 3: %w", context.Canceled), false},
		{"stale commit", fmt.Errorf("commit: %w", status.Error(codes.FailedPrecondition, "generation 1 refused")), false},
		{"coordinator unavailable on commit", fmt.Errorf("commit: %w", status.Error(codes.Unavailable, "no leader")), true},
	} {
		if got := ReportableFailure(tc.err); got != tc.want {
			t.Errorf("%s: ReportableFailure(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestFailureKind(t *testing.T) {
	data := shard.Corrupt("ds/shard-00003.arrow", errors.New("object ds/shard-00003.arrow batch 2 (rows 40-59): crc32c 1 does not match the index (2): corrupt shard"))
	ckpt := &trainer.CorruptCheckpointError{Step: 40, Object: "checkpoints/j/model-00000.safetensors",
		Err: shard.Corrupt("checkpoints/j/model-00000.safetensors", errors.New("sha256 mismatch"))}
	for _, tc := range []struct {
		name string
		err  error
		kind loompb.FailureKind
		step int64
	}{
		{"trainer error", errors.New("step 7: models: NaN in loss"), loompb.FailureKind_FAILURE_KIND_UNSPECIFIED, 0},
		{"transient storage", fmt.Errorf("stream: %w", errors.New("s3 get: 503 slow down")), loompb.FailureKind_FAILURE_KIND_UNSPECIFIED, 0},
		{"corrupt shard", fmt.Errorf("trainer: step 12: %w", data), loompb.FailureKind_FAILURE_KIND_CORRUPT_DATA, 0},
		// A checkpoint's objects are corrupt data too; the checkpoint wins.
		{"corrupt checkpoint", fmt.Errorf("generation 3: %w", ckpt), loompb.FailureKind_FAILURE_KIND_CORRUPT_CHECKPOINT, 40},
	} {
		kind, step := FailureKind(tc.err)
		if kind != tc.kind || step != tc.step {
			t.Errorf("%s: FailureKind = %v, %d; want %v, %d", tc.name, kind, step, tc.kind, tc.step)
		}
		if !ReportableFailure(tc.err) {
			t.Errorf("%s: not reportable", tc.name)
		}
	}
}

func TestRequestIDFitsTheCoordinatorsLimit(t *testing.T) {
	short := "failure/j/3/w1"
	if got := requestID(short); got != short {
		t.Errorf("requestID(%q) = %q, want it unchanged", short, got)
	}
	long := "failure/j/3/" + strings.Repeat("w", 300)
	got := requestID(long)
	if len(got) > maxRequestID || !strings.HasPrefix(got, "failure/") || got != requestID(long) || got == requestID(long+"x") {
		t.Errorf("requestID(300-byte worker) = %q (%d bytes), want a stable, distinct ID of at most %d bytes", got, len(got), maxRequestID)
	}
}
