package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/loomtrain/loom/models/safetensors"
	"github.com/loomtrain/loom/shard"
)

// trainAndSave trains stage 0 of a tiny LWM for 2 steps and checkpoints
// through committer; it returns the result.
func trainAndSave(t *testing.T, store shard.ObjectStore, c Committer) CheckpointResult {
	t.Helper()
	d := sharedData(t)
	ctx := context.Background()
	m := testManifest(t, "lwm", 4, 4)
	j := d.job(m, 0, store)
	j.Committer = c
	run, err := NewRun(ctx, j, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	for i := 0; i < 2; i++ {
		if _, err := run.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := run.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Training goes on while the upload runs.
	if _, err := run.Step(ctx); err != nil {
		t.Fatal(err)
	}
	return <-ch
}

func restoreErr(t *testing.T, store shard.ObjectStore, ref CheckpointRef) error {
	t.Helper()
	d := sharedData(t)
	m := testManifest(t, "lwm", 4, 4)
	run, err := NewRun(context.Background(), d.job(m, 0, store), &ref)
	if err == nil {
		run.Close()
	}
	return err
}

// TestCommitAfterUpload: the Committer is called once every object is
// stored with the checksum the reference carries, and the checkpoint taken
// after step 2 holds step 2's state although step 3 ran during the upload.
func TestCommitAfterUpload(t *testing.T) {
	store := shard.NewMemStore()
	var mu sync.Mutex
	var committed []CheckpointRef
	res := trainAndSave(t, store, CommitterFunc(func(ctx context.Context, ref CheckpointRef) error {
		for _, o := range ref.Objects {
			data, err := fetch(ctx, store, o)
			if err != nil {
				t.Errorf("commit called before %s was stored intact: %v", o.Path, err)
			}
			_ = data
		}
		mu.Lock()
		committed = append(committed, ref)
		mu.Unlock()
		return nil
	}))
	if res.Err != nil || res.Skipped {
		t.Fatalf("checkpoint: %+v", res)
	}
	if len(committed) != 1 || committed[0].Step != 2 || committed[0].Samples != 8 {
		t.Fatalf("committed %+v, want one checkpoint at step 2 with 8 samples", committed)
	}
	man, err := ReadCheckpoint(context.Background(), store, res.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if man.Optimizer.Steps != 2 || man.Sampler.Consumed != 8 || man.StageName != "text-32k" || len(man.Files) != 2 {
		t.Errorf("manifest: optimizer steps %d, consumed %d, stage %s, %d files", man.Optimizer.Steps, man.Sampler.Consumed, man.StageName, len(man.Files))
	}
	if err := restoreErr(t, store, res.Ref); err != nil {
		t.Errorf("restore: %v", err)
	}
}

// TestCommitRefused: a refused commit is reported and the reference is
// not handed out.
func TestCommitRefused(t *testing.T) {
	refuse := errors.New("generation 3 is stale")
	res := trainAndSave(t, shard.NewMemStore(), CommitterFunc(func(context.Context, CheckpointRef) error { return refuse }))
	if !errors.Is(res.Err, refuse) || len(res.Ref.Objects) != 0 {
		t.Errorf("refused commit: %+v, want the committer's error and no reference", res)
	}
}

// TestRestoreRefusesBadObjects: a corrupt, truncated or missing object,
// and a tensor that does not match its checksum, fail the restore with the
// object (and tensor) named; nothing partial is loaded.
func TestRestoreRefusesBadObjects(t *testing.T) {
	ctx := context.Background()
	store := shard.NewMemStore()
	res := trainAndSave(t, store, nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	ref := res.Ref
	var model CheckpointObject
	for _, o := range ref.Objects {
		if strings.HasPrefix(path.Base(o.Path), "model-") {
			model = o
		}
	}
	orig, err := store.GetRange(ctx, model.Path, 0, model.Size)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, b []byte) {
		if err := store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	flip := append([]byte(nil), orig...)
	flip[len(flip)-1] ^= 1
	for _, tc := range []struct {
		name  string
		setup func()
		want  string
	}{
		{"flipped byte", func() { put(model.Path, flip) }, model.Path + ": sha256"},
		{"truncated", func() { put(model.Path, orig[:len(orig)-8]) }, "(partial or replaced object)"},
		{"missing", func() { store.Delete(ctx, model.Path) }, model.Path},
	} {
		tc.setup()
		err := restoreErr(t, store, ref)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: restore error %v, want one naming %q", tc.name, err, tc.want)
		}
		// The worker tells the coordinator which checkpoint to set aside.
		var ce *CorruptCheckpointError
		if !errors.As(err, &ce) || ce.Step != ref.Step || ce.Object != model.Path {
			t.Errorf("%s: restore error %T %+v, want a *CorruptCheckpointError at step %d naming %s", tc.name, err, ce, ref.Step, model.Path)
		}
		put(model.Path, orig)
	}

	// A tensor changed and the object's checksums recomputed (as a buggy
	// writer would): the per-tensor checksum names the tensor.
	f, err := safetensors.Parse(orig)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	victim := f.Names()[1]
	for _, n := range f.Names() {
		raw, _ := f.Raw(n)
		info, _ := f.Info(n)
		raw = append([]byte(nil), raw...)
		if n == victim {
			raw[0] ^= 0x40
		}
		ts = append(ts, safetensors.Tensor{Name: n, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, f.Metadata); err != nil {
		t.Fatal(err)
	}
	put(model.Path, buf.Bytes())
	man, err := ReadCheckpoint(ctx, store, ref)
	if err != nil {
		t.Fatal(err)
	}
	bad := ref
	bad.Objects = nil
	for i := range man.Files {
		if man.Files[i].Path == model.Path {
			man.Files[i].SHA256, man.Files[i].Size = hexSum(buf.Bytes()), int64(buf.Len())
		}
		bad.Objects = append(bad.Objects, CheckpointObject{Path: man.Files[i].Path, SHA256: man.Files[i].SHA256, Size: man.Files[i].Size})
	}
	mj, _ := json.Marshal(man)
	mkey := path.Join(path.Dir(model.Path), ManifestName)
	put(mkey, mj)
	bad.Objects = append(bad.Objects, CheckpointObject{Path: mkey, SHA256: hexSum(mj), Size: int64(len(mj))})
	err = restoreErr(t, store, bad)
	if err == nil || !strings.Contains(err.Error(), "tensor "+victim) || !strings.Contains(err.Error(), model.Path) {
		t.Errorf("changed tensor: restore error %v, want one naming %s and tensor %s", err, model.Path, victim)
	}
	// The original reference no longer matches the rewritten manifest.
	if err := restoreErr(t, store, ref); err == nil || !strings.Contains(err.Error(), ManifestName) {
		t.Errorf("rewritten manifest under the old reference: %v, want a checksum error naming the manifest", err)
	}
}

// FuzzCheckpointManifest feeds arbitrary bytes as a checkpoint manifest:
// ReadCheckpoint must refuse them with an error, never panic, and accept
// only manifests of the right format, stage and step.
func FuzzCheckpointManifest(f *testing.F) {
	good, _ := json.Marshal(CheckpointManifest{Format: CheckpointFormat, Stage: 1, Step: 5})
	f.Add(good)
	f.Add([]byte(`{"format":"loom-checkpoint-v1","stage":1,"step":5,"files":[{"path":"x","role":"model","sha256":"00","size":1,"tensors":{}}]}`))
	f.Add([]byte(`{"format":"other"}`))
	f.Add([]byte(`{"format":"loom-checkpoint-v1","stage":1,"step":5,"extra":1}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		store := shard.NewMemStore()
		key := "ck/" + ManifestName
		if err := store.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		ref := CheckpointRef{Stage: 1, Step: 5, Objects: []CheckpointObject{{Path: key, SHA256: hexSum(data), Size: int64(len(data))}}}
		man, err := ReadCheckpoint(ctx, store, ref)
		if err == nil && (man.Format != CheckpointFormat || man.Stage != 1 || man.Step != 5 || len(man.Files) != 0) {
			t.Errorf("accepted %q as %+v", data, man)
		}
	})
}
