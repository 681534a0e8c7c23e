package trainer

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/hf"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/loomtrain/loom/shard"
)

// resolved is what the coordinator records for an init source naming a
// job (coordinator.State.resolveInit).
func resolved(ref CheckpointRef) *api.ResolvedCheckpoint {
	rc := &api.ResolvedCheckpoint{Step: ref.Step, Stage: ref.Stage}
	for _, o := range ref.Objects {
		rc.Objects = append(rc.Objects, api.CheckpointObject{Path: o.Path, SHA256: o.SHA256, Size: o.Size})
	}
	return rc
}

// Jobs that build on jobs: a text-only LWM job trains its LLM at the small
// size; a VILA job at the tiny size starts its LLM from that checkpoint.
// The VILA model takes the LLM's shape from the checkpoint's recorded
// config, every llm.* weight equals the checkpoint's, and the other parts
// start from the seed as without an init block.
func TestInitFromAnotherJob(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	store := shard.NewMemStore()

	text := testManifest(t, "lwm", 2, 4)
	text.Name, text.Model.Size = "text-pretrain", "small"
	text.Stages = text.Stages[:1]
	text.Stages[0].Overrides.MaxSeqLen = ptr(32)
	ref, trained, baseCfg := trainThenSave(t, d.job(text, 0, store), nil, 2)

	vila := testManifest(t, "vila", 2, 4)
	plain, err := NewRun(ctx, d.job(vila, 0, store), nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh := weights(plain)
	plain.Close()

	vila.Init = map[string]api.InitSource{"llm": {Job: text.Name, Checkpoint: resolved(ref)}}
	r, err := NewRun(ctx, d.job(vila, 0, store), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, want := r.cfg.LLM.Hidden, baseCfg.LLM.Hidden; got != want {
		t.Fatalf("VILA's LLM is %d wide, the text job's %d: the shape must come from the checkpoint", got, want)
	}
	got := weights(r)
	nLLM := 0
	for name, w := range got {
		if strings.HasPrefix(name, "llm.") {
			nLLM++
			if !slices.Equal(w, trained[name]) {
				t.Errorf("%s differs from the text job's checkpoint", name)
			}
		} else if strings.HasPrefix(name, "vit.") && !slices.Equal(w, fresh[name]) {
			t.Errorf("%s changed, but only the llm is initialised", name)
		}
	}
	if nLLM == 0 {
		t.Fatal("no llm.* parameters")
	}
	// The run trains from there.
	if _, err := r.Step(ctx); err != nil {
		t.Fatal(err)
	}

	if len(got["mm_projector.3.bias"]) != baseCfg.LLM.Hidden {
		t.Errorf("the projector maps to %d, not the LLM's width %d", len(got["mm_projector.3.bias"]), baseCfg.LLM.Hidden)
	}
	// The plan lists every tensor and what stays random.
	srcs, err := openInit(ctx, d.job(vila, 0, store), models.VILA)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := loadInit(ctx, d.job(vila, 0, store), srcs, r.model, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Parts) != 1 || len(rep.Parts[0].Tensors) != nLLM || rep.Parts[0].Layout != "loom checkpoint" {
		t.Fatalf("plan: %+v", rep.Parts)
	}
	if !slices.ContainsFunc(rep.RandomInit, func(n string) bool { return strings.HasPrefix(n, "vit.") }) ||
		slices.ContainsFunc(rep.RandomInit, func(n string) bool { return strings.HasPrefix(n, "llm.") }) {
		t.Fatalf("random init: %v", rep.RandomInit)
	}

	for _, c := range []struct {
		init map[string]api.InitSource
		err  string
	}{
		{map[string]api.InitSource{"qformer": {Job: text.Name, Checkpoint: resolved(ref)}}, "init.qformer: a vila model has no qformer"},
		{map[string]api.InitSource{"vision": {Job: text.Name, Checkpoint: resolved(ref)}}, "init.vision: job text-pretrain's lwm model has no vision tower"},
		{map[string]api.InitSource{"llm": {Job: text.Name}}, `init.llm: job "text-pretrain": no resolved checkpoint`},
		{map[string]api.InitSource{"llm": {Job: "someone-else", Checkpoint: resolved(ref)}}, `belongs to job "text-pretrain", not "someone-else"`},
	} {
		vila.Init = c.init
		_, err := NewRun(ctx, d.job(vila, 0, store), nil)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("init %v: NewRun error %v, want %q", c.init, err, c.err)
		}
	}
}

// A VILA job whose LLM and vision tower start from Hugging Face
// directories (the reference fixtures of models/hf: a sharded bf16 LLaMA
// with grouped-query attention and a CLIP vision tower): shapes come from
// their config.json, every weight equals the checkpoint's (the LLaMA's
// vocabulary of 64 padded to the tokenizer's), the projector stays random,
// and the stage trains at another resolution (positions interpolated).
func TestInitFromHuggingFace(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return "file://" + a
	}
	m := testManifest(t, "vila", 2, 4)
	m.Init = map[string]api.InitSource{
		"llm":    {URI: abs("../models/hf/testdata/llama_gqa")},
		"vision": {URI: abs("../models/hf/testdata/clip")},
	}
	m.Stages[0].Overrides.ImageSize = ptr(16)
	j := d.job(m, 0, shard.NewMemStore())
	j.OpenDataset = d.openWithInit
	rep, err := PlanInit(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Parts) != 2 || rep.Parts[0].Layout != "LlamaForCausalLM" || rep.Parts[1].Layout != "CLIPVisionModel" {
		t.Fatalf("plan parts: %+v", rep.Parts)
	}
	if !slices.ContainsFunc(rep.RandomInit, func(s string) bool { return strings.HasPrefix(s, "mm_projector.") }) ||
		!slices.ContainsFunc(rep.RandomInit, func(s string) bool { return strings.HasPrefix(s, "llm.model.embed_tokens.weight rows 64..") }) {
		t.Fatalf("random init: %v", rep.RandomInit)
	}
	r, err := NewRun(ctx, j, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cfg.LLM.Hidden != 32 || r.cfg.LLM.KVHeads != 2 || r.cfg.ViT.Width != 16 || r.cfg.ImageSize != 16 {
		t.Fatalf("config from the sources: llm %+v vit %+v image %d", r.cfg.LLM, r.cfg.ViT, r.cfg.ImageSize)
	}
	for _, c := range []struct{ dir, hf, loom string }{
		{"llama_gqa", "model.layers.1.self_attn.k_proj.weight", "llm.model.layers.1.self_attn.k_proj.weight"},
		{"clip", "vision_model.encoder.layers.2.mlp.fc1.weight", "vit.encoder.layers.2.mlp.fc1.weight"},
	} {
		ck, err := hf.Open(ctx, hf.Dir("../models/hf/testdata/"+c.dir))
		if err != nil {
			t.Fatal(err)
		}
		want, err := ck.Float32(ctx, c.hf)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.model.Params().Get(c.loom).Data, want) {
			t.Errorf("%s differs from %s in %s", c.loom, c.hf, c.dir)
		}
	}
	if _, err := r.Step(ctx); err != nil {
		t.Fatal(err)
	}
}

// Export then import is bit-identical: a VILA job's LLM and vision tower
// written as Hugging Face directories and read back into a fresh model
// through the same layouts.
func TestExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	m := testManifest(t, "vila", 1, 4)
	r, err := NewRun(ctx, d.job(m, 0, shard.NewMemStore()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Step(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src := r.model
	dst, err := models.New(src.Config(), 77)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ part, layout string }{{"llm", "LlamaForCausalLM"}, {"vision", "CLIPVisionModel"}} {
		dir := t.TempDir()
		_, name, err := ExportHF(ctx, src, c.part, hf.Dir(dir), hf.ExportOptions{ShardBytes: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		if name != c.layout {
			t.Errorf("%s exported as %s, want %s", c.part, name, c.layout)
		}
		ck, err := hf.Open(ctx, hf.Dir(dir))
		if err != nil {
			t.Fatal(err)
		}
		l, err := hf.FindLayout(c.part, models.VILA, ck.Config())
		if err != nil {
			t.Fatal(err)
		}
		mp, err := l.Mapping(dst.Config())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hf.Load(ctx, ck, mp, dst.Params()); err != nil {
			t.Fatal(err)
		}
		pat := partPatterns(c.part, models.VILA)
		n := 0
		for _, name := range src.Params().Names() {
			if nn.Match(name, pat...) {
				n++
				if !slices.Equal(src.Params().Get(name).Data, dst.Params().Get(name).Data) {
					t.Errorf("%s: %s differs after export and import", c.part, name)
				}
			}
		}
		if n == 0 {
			t.Fatalf("%s: no parameters", c.part)
		}
	}
}

// A whole LlavaForConditionalGeneration initialises a VILA job's model:
// tower, projector and LLM, nothing left random but the vocabulary rows
// Loom's tokenizer adds.
func TestInitWholeLlava(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	dir, err := filepath.Abs("../models/hf/testdata/llava")
	if err != nil {
		t.Fatal(err)
	}
	m := testManifest(t, "vila", 1, 4)
	m.Init = map[string]api.InitSource{"model": {URI: "file://" + dir}}
	j := d.job(m, 0, shard.NewMemStore())
	j.OpenDataset = d.openWithInit
	rep, err := PlanInit(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.RandomInit {
		if !strings.Contains(r, " rows ") {
			t.Errorf("%s stays random", r)
		}
	}
	r, err := NewRun(ctx, j, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cfg.Projector != models.ProjMLP2xGELU || r.cfg.LLM.Hidden != 24 {
		t.Fatalf("config: projector %s, llm %+v", r.cfg.Projector, r.cfg.LLM)
	}
	if _, err := r.Step(ctx); err != nil {
		t.Fatal(err)
	}
}

// BLIP-2's LLM first appears in stage 2: an init.llm source is deferred at
// stage 1 and initialises the LLM when stage 2 starts from stage 1's final
// checkpoint (which gives the ViT and Q-Former).
func TestInitAppliesWhereThePartAppears(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	store := shard.NewMemStore()
	text := testManifest(t, "lwm", 1, 4)
	text.Name = "text-pretrain"
	text.Stages = text.Stages[:1]
	ref, trained, _ := trainThenSave(t, d.job(text, 0, store), nil, 1)

	m := testManifest(t, "blip2", 1, 4)
	m.Init = map[string]api.InitSource{"llm": {Job: text.Name, Checkpoint: resolved(ref)}}
	rep, err := PlanInit(ctx, d.job(m, 0, store))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Parts) != 1 || rep.Parts[0].Deferred == "" {
		t.Fatalf("stage 1 plan: %+v", rep.Parts)
	}
	r1, stage1, _ := trainThenSave(t, d.job(m, 0, store), nil, 1)
	s2, err := NewRun(ctx, d.job(m, 1, store), &r1)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	n := 0
	for name, w := range weights(s2) {
		switch {
		case strings.HasPrefix(name, "llm."):
			n++
			if !slices.Equal(w, trained[name]) {
				t.Errorf("%s is not the text job's", name)
			}
		case strings.HasPrefix(name, "qformer.") || strings.HasPrefix(name, "vit."):
			if !slices.Equal(w, stage1[name]) {
				t.Errorf("%s is not stage 1's", name)
			}
		}
	}
	if n == 0 {
		t.Fatal("stage 2 has no llm.* parameters")
	}
}

// A Hugging Face LLM directory with tokenizer files gives the job its
// tokenizer: Loom's special tokens it lacks are appended, the LLM's
// vocabulary grows to match (the new rows random), and the checkpoint
// records where the tokenizer came from.
func TestInitTokenizerFromSource(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	dir := t.TempDir()
	for _, f := range []string{"../models/hf/testdata/llama_gqa", "../models/tokenizer/testdata/hf/llama"} {
		es, err := os.ReadDir(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			b, err := os.ReadFile(filepath.Join(f, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644)
		}
	}
	m := testManifest(t, "vila", 1, 4)
	m.Init = map[string]api.InitSource{"llm": {URI: "file://" + dir}}
	j := d.job(m, 0, shard.NewMemStore())
	j.OpenDataset = d.openWithInit
	r, err := NewRun(ctx, j, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ext, ok := r.builder.tok.(*tokenizer.Extended)
	if !ok {
		t.Fatalf("tokenizer %T, want the source's, extended", r.builder.tok)
	}
	if r.cfg.LLM.Vocab != ext.VocabSize() || ext.Base().VocabSize() != 600 {
		t.Fatalf("LLM vocab %d, tokenizer %d (base %d)", r.cfg.LLM.Vocab, ext.VocabSize(), ext.Base().VocabSize())
	}
	if id, _ := ext.TokenID(tokenizer.BOS); int32(id) != r.cfg.Special.BOS || id != 1 {
		t.Errorf("BOS %d, special %d: want the tokenizer's own <s>", id, r.cfg.Special.BOS)
	}
	if _, err := r.Step(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := r.SaveSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	man, err := ReadCheckpoint(ctx, j.Store, res.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if man.Tokenizer != "file://"+dir {
		t.Errorf("checkpoint records tokenizer %q", man.Tokenizer)
	}
}

// LWM's image tokenizer starts from a VQGAN file: LWM's pickled Flax
// params converted once (hf.ConvertLWMVQGAN) into a Loom VQGAN file. The
// codebook size comes from it, the vision vocabulary follows, and the
// tokenizer's weights are the file's at every stage.
func TestInitVQGANForLWM(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	pkl, err := os.ReadFile("../models/hf/testdata/vqgan_lwm_tiny.pkl")
	if err != nil {
		t.Fatal(err)
	}
	ts, vc, err := hf.ConvertLWMVQGAN(pkl)
	if err != nil {
		t.Fatal(err)
	}
	vc.Groups, vc.ImageSize = 4, 32 // what the fixture was built with (gen_vqgan.py)
	cj, _ := json.Marshal(models.Config{Family: models.VQGAN, Size: "tiny", VQGAN: vc})
	dir := t.TempDir()
	file := filepath.Join(dir, "vqgan.safetensors")
	if err := safetensors.WriteFile(file, ts, map[string]string{"config": string(cj)}); err != nil {
		t.Fatal(err)
	}
	m := testManifest(t, "lwm", 1, 4)
	m.Stages = []api.Stage{m.Stages[5]} // vision-1k
	m.Init = map[string]api.InitSource{"vqgan": {URI: "file://" + file}}
	j := d.job(m, 0, shard.NewMemStore())
	j.OpenDataset = d.openWithInit
	rep, err := PlanInit(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Parts) != 1 || rep.Parts[0].Layout != "LWM image tokenizer" {
		t.Fatalf("plan: %+v", rep.Parts)
	}
	r, err := NewRun(ctx, j, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cfg.Codebook != vc.Codebook || r.builder.vq.Cfg.Codebook != vc.Codebook {
		t.Fatalf("codebook %d (tokenizer %d), the file's %d", r.cfg.Codebook, r.builder.vq.Cfg.Codebook, vc.Codebook)
	}
	f, err := safetensors.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	emb := ""
	for _, n := range f.Names() {
		if strings.Contains(n, "embed") || strings.Contains(n, "codebook") {
			emb = n
		}
	}
	want, _ := f.Float32(emb)
	if got := r.vqParams.Get(emb); got == nil || !slices.Equal(got.Data, want) {
		t.Fatalf("tokenizer's %s differs from the file's", emb)
	}
	if _, err := r.Step(ctx); err != nil {
		t.Fatal(err)
	}
}

// A VQGAN job's checkpoint initialises an LWM job's image tokenizer
// (init: vqgan: {job}); the codebook and vision vocabulary follow it.
func TestInitVQGANFromJob(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	store := shard.NewMemStore()
	vq := testManifest(t, "vqgan", 3, 4)
	vr, err := NewRun(ctx, d.job(vq, 0, store), nil)
	if err != nil {
		t.Fatal(err)
	}
	var first, last float64
	for i := 0; i < 3; i++ {
		p, err := vr.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p.Loss
		}
		last = p.Loss
	}
	if !(last < first) {
		t.Errorf("VQGAN loss %v → %v, want it to fall", first, last)
	}
	res, err := vr.SaveSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	trained := weights(vr)
	vr.Close()

	m := testManifest(t, "lwm", 1, 4)
	m.Stages = []api.Stage{m.Stages[5]} // vision-1k
	m.Init = map[string]api.InitSource{"vqgan": {Job: vq.Name, Checkpoint: resolved(res.Ref)}}
	r, err := NewRun(ctx, d.job(m, 0, store), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cfg.Codebook != vr.cfg.VQGAN.Codebook {
		t.Fatalf("LWM codebook %d, the VQGAN job's %d", r.cfg.Codebook, vr.cfg.VQGAN.Codebook)
	}
	for _, n := range r.vqParams.Names() {
		if !slices.Equal(r.vqParams.Get(n).Data, trained[n]) {
			t.Errorf("tokenizer's %s is not the VQGAN job's", n)
		}
	}
	if _, err := r.Step(ctx); err != nil {
		t.Fatal(err)
	}
}

// openWithInit opens the init block's sources (the OpenDataset call with
// the name "init") from the local file system, and the datasets as open.
func (d *testData) openWithInit(ctx context.Context, ds api.Dataset) (shard.ObjectStore, string, error) {
	if ds.Name == "init" {
		loc, err := shard.ParseLocation(ds.URI)
		if err != nil {
			return nil, "", err
		}
		return loc.Open(shard.S3Config{})
	}
	return d.open(ctx, ds)
}

// trainThenSave runs steps of a job's stage from restore, checkpoints it and
// returns the committed reference, the weights and the model config.
func trainThenSave(t *testing.T, j Job, restore *CheckpointRef, steps int) (CheckpointRef, map[string][]float32, models.Config) {
	t.Helper()
	ctx := context.Background()
	r, err := NewRun(ctx, j, restore)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := 0; i < steps; i++ {
		if _, err := r.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	res, err := r.SaveSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res.Ref, weights(r), r.cfg
}

// model.tokenizer names the tokenizer a job trains with when no init
// source brings one: the LLM's vocabulary is its size, checkpoints record
// it, and --dry-run's plan reports it.
func TestModelTokenizer(t *testing.T) {
	ctx := context.Background()
	d := sharedData(t)
	c := tokenizer.NewCorpus(tokenizer.DefaultSpecial)
	c.Add([]byte(strings.Repeat("a red circle on a blue background. a green square on a white background.\n", 20)))
	bpe, err := tokenizer.Train(tokenizer.TrainConfig{VocabSize: 400}, c)
	if err != nil {
		t.Fatal(err)
	}
	files, err := tokenizer.HFFiles(bpe)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := testManifest(t, "vila", 1, 4)
	m.Model.Tokenizer = "file://" + dir
	j := d.job(m, 0, shard.NewMemStore())
	j.OpenDataset = d.openWithInit
	plan, err := PlanInit(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Tokenizer != m.Model.Tokenizer || plan.VocabSize != bpe.VocabSize() {
		t.Errorf("plan: tokenizer %q with %d tokens, want %q with %d", plan.Tokenizer, plan.VocabSize, m.Model.Tokenizer, bpe.VocabSize())
	}
	r, err := NewRun(ctx, j, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cfg.LLM.Vocab != bpe.VocabSize() {
		t.Fatalf("LLM vocab %d, want the tokenizer's %d", r.cfg.LLM.Vocab, bpe.VocabSize())
	}
	if text := "<image> a red circle"; !slices.Equal(r.builder.tok.Encode(text), bpe.Encode(text)) {
		t.Errorf("the job encodes %q to %v, the tokenizer to %v", text, r.builder.tok.Encode(text), bpe.Encode(text))
	}
	if _, err := r.Step(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := r.SaveSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	man, err := ReadCheckpoint(ctx, j.Store, res.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if man.Tokenizer != m.Model.Tokenizer {
		t.Errorf("checkpoint records tokenizer %q, want %q", man.Tokenizer, m.Model.Tokenizer)
	}

	// A directory without tokenizer files is refused, naming the field.
	m.Model.Tokenizer = "file://" + t.TempDir()
	if _, err := NewRun(ctx, d.job(m, 0, shard.NewMemStore()), nil); err == nil || !strings.Contains(err.Error(), "model.tokenizer") || !strings.Contains(err.Error(), "no tokenizer.json or tokenizer.model") {
		t.Errorf("empty tokenizer dir: err = %v", err)
	}
}
