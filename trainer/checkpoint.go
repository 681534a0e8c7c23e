package trainer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"

	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
	"github.com/loomtrain/loom/shard"
)

// CheckpointFormat is the "format" of a checkpoint manifest.
const CheckpointFormat = "loom-checkpoint-v1"

// shardBytes bounds one safetensors object of a checkpoint.
var shardBytes = 64 << 20

// CheckpointManifest is the JSON manifest of a checkpoint: what was saved,
// where, with which checksums, and everything a resume needs besides the
// tensors.
type CheckpointManifest struct {
	Format     string `json:"format"`
	Job        string `json:"job"`
	Recipe     string `json:"recipe"`
	Stage      int    `json:"stage"`
	StageName  string `json:"stage_name"`
	Step       int64  `json:"step"`       // global steps completed
	StageStep  int64  `json:"stage_step"` // steps completed in the stage
	Generation uint64 `json:"generation"`
	World      int    `json:"world"` // world size that wrote it (informational)
	// Sampler is the data position: the stage stream's samples consumed,
	// its epoch and seed (shard.State), with the global batch it advanced by.
	Sampler     shard.State `json:"sampler"`
	GlobalBatch int         `json:"global_batch"`
	// RNG: every random choice is drawn from PCG streams keyed by
	// (seed, step, rank, micro-batch) or (seed, sample position), so the
	// seed and the step are the whole random state.
	RNG struct {
		Seed   uint64 `json:"seed"`
		Step   int64  `json:"step"`
		Scheme string `json:"scheme"`
	} `json:"rng"`
	// Optimizer: AdamW's step count and the trainable parameters whose
	// moments the optimizer files hold ("m.NAME", "v.NAME").
	Optimizer struct {
		Steps     int      `json:"steps"`
		LR        float64  `json:"lr"`
		Trainable []string `json:"trainable"`
	} `json:"optimizer"`
	Files []CheckpointFile `json:"files"`
	// Finals are the committed final checkpoints of earlier stages (for
	// stages that initialise from a stage other than the previous one).
	Finals map[string]CheckpointRef `json:"finals,omitempty"`
	// Model is the models.Config the weights were trained at, so that a
	// checkpoint reopens without its manifest (export, other jobs' init).
	// Absent in checkpoints written before it was added.
	Model json.RawMessage `json:"model,omitempty"`
	// Tokenizer is where the tokenizer files the job trained with are (a
	// Hugging Face directory of its init block); empty: Loom's byte-level
	// tokenizer with its special tokens.
	Tokenizer string `json:"tokenizer,omitempty"`
}

// CheckpointFile is one safetensors object of a checkpoint.
type CheckpointFile struct {
	Path   string `json:"path"`
	Role   string `json:"role"` // "model" or "optimizer"
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Tensors maps each tensor to the sha256 of its bytes, so that a
	// corrupt tensor is named.
	Tensors map[string]string `json:"tensors"`
}

// checkpointDir is where a checkpoint's objects go.
func checkpointDir(prefix string, stage int, name string, step int64, gen uint64) string {
	return shard.JoinKey(prefix, fmt.Sprintf("stage-%02d-%s", stage, name), fmt.Sprintf("step-%010d-g%d", step, gen))
}

type pendingFile struct {
	role    string
	tensors []safetensors.Tensor
}

// Checkpoint copies the weights, optimizer moments and data position and
// returns; the objects are uploaded in the background while training goes
// on, then committed through the Committer. The channel yields exactly one
// result. On ranks other than 0 it yields a Skipped result at once: every
// rank holds the same state, and rank 0 writes it.
func (r *Run) Checkpoint(ctx context.Context) (<-chan CheckpointResult, error) {
	out := make(chan CheckpointResult, 1)
	t0 := r.now()
	moments := r.opt.Moments
	if r.zero != nil {
		// The moments are sharded: every rank takes part in gathering
		// them whole for rank 0 (zero.go).
		m, v, err := r.zero.gatherMoments(ctx, r.opt, r.job.Rank == 0)
		if err != nil {
			return nil, fmt.Errorf("trainer: checkpoint at step %d: %w", r.step, err)
		}
		moments = func(i int) ([]float32, []float32) { return m[i], v[i] }
	}
	if r.job.Rank != 0 {
		out <- CheckpointResult{Skipped: true}
		return out, nil
	}
	files, man := r.snapshot(moments)
	blocked := r.now().Sub(t0)
	r.uploads.Add(1)
	go func() {
		defer r.uploads.Done()
		res := CheckpointResult{Blocked: blocked}
		t1 := r.now()
		ref, err := r.upload(ctx, files, man)
		res.Upload = r.now().Sub(t1)
		if err == nil && r.job.Committer != nil {
			t2 := r.now()
			err = r.job.Committer.Commit(ctx, ref)
			res.Commit = r.now().Sub(t2)
			if err != nil {
				err = fmt.Errorf("trainer: checkpoint step %d: commit: %w", ref.Step, err)
			}
		}
		if err != nil {
			res.Err = err
			r.log.Warn("trainer: checkpoint not committed", "step", man.Step, "err", err)
		} else {
			res.Ref = ref
			r.log.Info("trainer: checkpoint committed", "step", ref.Step, "stage", man.StageName, "objects", len(ref.Objects),
				"blocked", blocked, "upload", res.Upload)
		}
		out <- res
	}()
	return out, nil
}

// SaveSync writes a checkpoint and waits for its commit (the synchronous
// baseline of the benchmark, and what a final checkpoint wants).
func (r *Run) SaveSync(ctx context.Context) (CheckpointResult, error) {
	ch, err := r.Checkpoint(ctx)
	if err != nil {
		return CheckpointResult{}, err
	}
	res := <-ch
	return res, res.Err
}

// snapshot copies the state into safetensors tensors (the only part of a
// checkpoint that blocks training) and fills the manifest; moments(i) are
// trainable parameter i's whole AdamW moments.
func (r *Run) snapshot(moments func(i int) (m, v []float32)) ([]pendingFile, *CheckpointManifest) {
	st := r.stage
	man := &CheckpointManifest{Format: CheckpointFormat, Job: r.job.Manifest.Name, Recipe: st.Recipe.Name,
		Stage: st.Index, StageName: st.Name, Step: r.step, StageStep: r.step - st.Start, Generation: r.job.Generation,
		World: r.job.World, GlobalBatch: st.GlobalBatch}
	n := r.data.sampler.Orders
	epoch := int64(0)
	if len(n) == 1 && n[0].Len() > 0 {
		epoch = r.samples / n[0].Len()
	}
	man.Sampler = shard.State{Seed: seed(r.job.Manifest), Epoch: epoch, Consumed: r.samples}
	man.RNG.Seed, man.RNG.Step, man.RNG.Scheme = seed(r.job.Manifest), r.step, "pcg(seed, step<<20|rank<<8|micro); pcg(seed^stage<<32, sample position)"
	man.Optimizer.Steps, man.Optimizer.LR = r.opt.Steps(), float64(r.opt.Config.LR)
	if b, err := json.Marshal(r.model.Config()); err == nil {
		man.Model = b
	}
	man.Tokenizer = r.tokenizerURI
	if len(r.finals) > 0 {
		man.Finals = map[string]CheckpointRef{}
		for k, v := range r.finals {
			man.Finals[strconv.Itoa(k)] = v
		}
	}
	var files []pendingFile
	add := func(role string, t safetensors.Tensor) {
		if len(files) == 0 || files[len(files)-1].role != role || size(files[len(files)-1].tensors)+len(t.Data) > shardBytes {
			files = append(files, pendingFile{role: role})
		}
		f := &files[len(files)-1]
		f.tensors = append(f.tensors, t)
	}
	for _, name := range r.model.Params().Names() {
		p := r.model.Params().Get(name)
		add("model", safetensors.F32Tensor(name, p.Shape, p.Data))
	}
	for i, p := range r.params {
		m, v := moments(i)
		man.Optimizer.Trainable = append(man.Optimizer.Trainable, p.Name)
		add("optimizer", safetensors.F32Tensor("m."+p.Name, p.Shape, m))
		add("optimizer", safetensors.F32Tensor("v."+p.Name, p.Shape, v))
	}
	return files, man
}

func size(ts []safetensors.Tensor) int {
	n := 0
	for _, t := range ts {
		n += len(t.Data)
	}
	return n
}

// upload writes the files, then the manifest (last, so that a manifest
// names only objects already written), and returns the reference.
func (r *Run) upload(ctx context.Context, files []pendingFile, man *CheckpointManifest) (CheckpointRef, error) {
	dir := checkpointDir(r.job.CheckpointPrefix, man.Stage, man.StageName, man.Step, man.Generation)
	ref := CheckpointRef{Stage: man.Stage, Step: man.Step, Generation: man.Generation, Samples: man.Sampler.Consumed}
	count := map[string]int{}
	for _, f := range files {
		count[f.role]++
	}
	idx := map[string]int{}
	for _, f := range files {
		idx[f.role]++
		var buf bytes.Buffer
		if err := safetensors.Write(&buf, f.tensors, map[string]string{"job": man.Job, "step": strconv.FormatInt(man.Step, 10), "role": f.role}); err != nil {
			return ref, fmt.Errorf("trainer: checkpoint step %d: %w", man.Step, err)
		}
		key := path.Join(dir, fmt.Sprintf("%s-%05d-of-%05d.safetensors", f.role, idx[f.role], count[f.role]))
		cf := CheckpointFile{Path: key, Role: f.role, SHA256: hexSum(buf.Bytes()), Size: int64(buf.Len()), Tensors: map[string]string{}}
		for _, t := range f.tensors {
			cf.Tensors[t.Name] = hexSum(t.Data)
		}
		if err := r.job.Store.Put(ctx, key, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
			return ref, fmt.Errorf("trainer: checkpoint step %d: %w", man.Step, err)
		}
		man.Files = append(man.Files, cf)
		ref.Objects = append(ref.Objects, CheckpointObject{Path: key, SHA256: cf.SHA256, Size: cf.Size})
	}
	mj, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return ref, err
	}
	key := path.Join(dir, ManifestName)
	if err := r.job.Store.Put(ctx, key, bytes.NewReader(mj), int64(len(mj))); err != nil {
		return ref, fmt.Errorf("trainer: checkpoint step %d: %w", man.Step, err)
	}
	ref.Objects = append(ref.Objects, CheckpointObject{Path: key, SHA256: hexSum(mj), Size: int64(len(mj))})
	return ref, nil
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ReadCheckpoint fetches and verifies a committed checkpoint's manifest.
func ReadCheckpoint(ctx context.Context, store shard.ObjectStore, ref CheckpointRef) (*CheckpointManifest, error) {
	var mo *CheckpointObject
	for i := range ref.Objects {
		if path.Base(ref.Objects[i].Path) == ManifestName {
			mo = &ref.Objects[i]
		}
	}
	if mo == nil {
		return nil, fmt.Errorf("trainer: checkpoint step %d: no %s among its %d objects", ref.Step, ManifestName, len(ref.Objects))
	}
	data, err := fetch(ctx, store, *mo)
	if err != nil {
		return nil, err
	}
	var man CheckpointManifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	// The manifest passed its sha256, so what follows is wrong as
	// committed: corrupt, not transient.
	if err := dec.Decode(&man); err != nil {
		return nil, shard.Corrupt(mo.Path, fmt.Errorf("trainer: checkpoint %s: %w", mo.Path, err))
	}
	if man.Format != CheckpointFormat {
		return nil, shard.Corrupt(mo.Path, fmt.Errorf("trainer: checkpoint %s: format %q, want %q", mo.Path, man.Format, CheckpointFormat))
	}
	if man.Step != ref.Step || man.Stage != ref.Stage {
		return nil, shard.Corrupt(mo.Path, fmt.Errorf("trainer: checkpoint %s: stage %d step %d, the reference says stage %d step %d", mo.Path, man.Stage, man.Step, ref.Stage, ref.Step))
	}
	committed := map[string]CheckpointObject{}
	for _, o := range ref.Objects {
		committed[o.Path] = o
	}
	for _, f := range man.Files {
		if o, ok := committed[f.Path]; !ok || o.SHA256 != f.SHA256 {
			return nil, shard.Corrupt(mo.Path, fmt.Errorf("trainer: checkpoint %s: file %s is not among the committed objects with sha256 %s", mo.Path, f.Path, f.SHA256))
		}
	}
	return &man, nil
}

// fetch reads a whole object and checks its size and sha256. An object
// that is missing, of another size or another sha256 is a
// *shard.CorruptError; a storage error is returned as it is.
func fetch(ctx context.Context, store shard.ObjectStore, o CheckpointObject) ([]byte, error) {
	info, err := store.Stat(ctx, o.Path)
	if err != nil {
		err = fmt.Errorf("trainer: checkpoint object %s: %w", o.Path, err)
		if errors.Is(err, shard.ErrNotFound) {
			// Committed objects are never deleted while committed.
			err = shard.Corrupt(o.Path, err)
		}
		return nil, err
	}
	if info.Size != o.Size {
		return nil, shard.Corrupt(o.Path, fmt.Errorf("trainer: checkpoint object %s: %d bytes, the checkpoint says %d (partial or replaced object)", o.Path, info.Size, o.Size))
	}
	data, err := store.GetRange(ctx, o.Path, 0, o.Size)
	if err != nil {
		return nil, fmt.Errorf("trainer: checkpoint object %s: %w", o.Path, err)
	}
	if got := hexSum(data); got != o.SHA256 {
		return nil, shard.Corrupt(o.Path, fmt.Errorf("trainer: checkpoint object %s: sha256 %s, the checkpoint says %s", o.Path, got, o.SHA256))
	}
	return data, nil
}

// readFiles fetches the files of one role, verifies them whole and tensor
// by tensor, and merges them into one in-memory safetensors file.
func readFiles(ctx context.Context, store shard.ObjectStore, man *CheckpointManifest, role string) (*safetensors.File, error) {
	var all []safetensors.Tensor
	for _, f := range man.Files {
		if f.Role != role {
			continue
		}
		data, err := fetch(ctx, store, CheckpointObject{Path: f.Path, SHA256: f.SHA256, Size: f.Size})
		if err != nil {
			return nil, err
		}
		sf, err := safetensors.Parse(data)
		if err != nil {
			return nil, shard.Corrupt(f.Path, fmt.Errorf("trainer: checkpoint object %s: %w", f.Path, err))
		}
		for _, name := range sf.Names() {
			raw, err := sf.Raw(name)
			if err != nil {
				return nil, shard.Corrupt(f.Path, fmt.Errorf("trainer: checkpoint object %s: tensor %s: %w", f.Path, name, err))
			}
			if want, ok := f.Tensors[name]; !ok || hexSum(raw) != want {
				return nil, shard.Corrupt(f.Path, fmt.Errorf("trainer: checkpoint object %s: tensor %s: sha256 %s, the manifest says %q", f.Path, name, hexSum(raw), want))
			}
			info, _ := sf.Info(name)
			all = append(all, safetensors.Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: raw})
		}
	}
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, all, nil); err != nil {
		return nil, err
	}
	return safetensors.Parse(buf.Bytes())
}

// CorruptCheckpointError is a job's own committed checkpoint that cannot
// be restored because its stored objects are corrupt (a
// *shard.CorruptError inside). Reading it again gives the same bytes: the
// worker reports it, and the coordinator sets the checkpoint aside and
// restarts the job from the one before.
type CorruptCheckpointError struct {
	Step   int64  // the checkpoint's step
	Object string // the object at fault
	Err    error
}

func (e *CorruptCheckpointError) Error() string {
	return fmt.Sprintf("checkpoint at step %d is corrupt: %v", e.Step, e.Err)
}
func (e *CorruptCheckpointError) Unwrap() error { return e.Err }

// corruptAt marks err as a corrupt checkpoint at step when it is about
// corrupt bytes.
func corruptAt(step int64, err error) error {
	var ce *shard.CorruptError
	if errors.As(err, &ce) {
		return &CorruptCheckpointError{Step: step, Object: ce.Object, Err: err}
	}
	return err
}

// restore loads a committed checkpoint: a full resume when it belongs to
// this stage, the stage's initialisation when it is an earlier stage's
// final checkpoint. Corrupt objects of the job's own checkpoints give a
// *CorruptCheckpointError naming the checkpoint's step.
func (r *Run) restore(ctx context.Context, ref *CheckpointRef) error {
	st := r.stage
	man, err := ReadCheckpoint(ctx, r.job.Store, *ref)
	if err != nil {
		return corruptAt(ref.Step, err)
	}
	for k, v := range man.Finals {
		i, err := strconv.Atoi(k)
		if err != nil {
			return fmt.Errorf("trainer: checkpoint step %d: finals: key %q is not a stage index", man.Step, k)
		}
		r.finals[i] = v
	}
	switch {
	case man.Stage == st.Index:
		if man.GlobalBatch != st.GlobalBatch {
			return fmt.Errorf("trainer: checkpoint step %d: global batch %d, stage %q has %d", man.Step, man.GlobalBatch, st.Name, st.GlobalBatch)
		}
		mf, err := readFiles(ctx, r.job.Store, man, "model")
		if err != nil {
			return corruptAt(man.Step, err)
		}
		if _, err := r.model.Params().Load(mf, nn.LoadOptions{}); err != nil {
			return fmt.Errorf("trainer: checkpoint step %d (model files): %w", man.Step, err)
		}
		of, err := readFiles(ctx, r.job.Store, man, "optimizer")
		if err != nil {
			return corruptAt(man.Step, err)
		}
		if err := r.loadOptimizer(of, man); err != nil {
			return err
		}
		r.step, r.samples = man.Step, man.Sampler.Consumed
		return nil
	case man.Stage < st.Index:
		r.finals[man.Stage] = *ref
		if st.InitFrom != man.Stage {
			f, ok := r.finals[st.InitFrom]
			if !ok {
				return fmt.Errorf("trainer: stage %q initialises from stage %d, and checkpoint step %d does not record that stage's final checkpoint", st.Name, st.InitFrom, man.Step)
			}
			if man, err = ReadCheckpoint(ctx, r.job.Store, f); err != nil {
				return corruptAt(f.Step, err)
			}
		}
		mf, err := readFiles(ctx, r.job.Store, man, "model")
		if err != nil {
			return corruptAt(man.Step, err)
		}
		loaded, err := r.model.Params().Load(mf, nn.LoadOptions{Only: st.Spec.InitOnly, Skip: st.Spec.InitSkip})
		if err != nil {
			return fmt.Errorf("trainer: stage %q from stage %q's checkpoint step %d: %w", st.Name, man.StageName, man.Step, err)
		}
		r.log.Info("trainer: stage initialised", "stage", st.Name, "from", man.StageName, "step", man.Step, "tensors", len(loaded))
		// Parts that first appear in this stage (BLIP-2's LLM) start
		// from the manifest's init block.
		return r.applyInit(ctx, loaded)
	}
	return fmt.Errorf("trainer: checkpoint step %d belongs to stage %d, after stage %d (%s)", man.Step, man.Stage, st.Index, st.Name)
}

func (r *Run) loadOptimizer(f *safetensors.File, man *CheckpointManifest) error {
	if len(man.Optimizer.Trainable) != len(r.params) {
		return fmt.Errorf("trainer: checkpoint step %d: optimizer holds %d parameters, stage %q trains %d", man.Step, len(man.Optimizer.Trainable), r.stage.Name, len(r.params))
	}
	for i, p := range r.params {
		if man.Optimizer.Trainable[i] != p.Name {
			return fmt.Errorf("trainer: checkpoint step %d: optimizer parameter %d is %s, the stage trains %s", man.Step, i, man.Optimizer.Trainable[i], p.Name)
		}
		var m, v []float32
		if r.zero != nil {
			// Whole here; loadMoments keeps this rank's pieces.
			m, v = make([]float32, len(p.Data)), make([]float32, len(p.Data))
		} else {
			m, v = r.opt.Moments(i)
		}
		for _, mv := range []struct {
			name string
			dst  []float32
		}{{"m." + p.Name, m}, {"v." + p.Name, v}} {
			vals, err := f.Float32(mv.name)
			if err != nil {
				return fmt.Errorf("trainer: checkpoint step %d: optimizer tensor %s: %w", man.Step, mv.name, err)
			}
			if len(vals) != len(mv.dst) {
				return fmt.Errorf("trainer: checkpoint step %d: optimizer tensor %s has %d values, the parameter %d", man.Step, mv.name, len(vals), len(mv.dst))
			}
			copy(mv.dst, vals)
		}
		if r.zero != nil {
			r.zero.loadMoments(r.opt, i, m, v)
		}
	}
	r.opt.SetSteps(man.Optimizer.Steps)
	return nil
}
