package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/hf"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/safetensors"
	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/loomtrain/loom/models/vqgan"
	"github.com/loomtrain/loom/shard"
)

// initSource is one part of a manifest's init block, opened: a Hugging
// Face directory (ck, layout) or another job's committed checkpoint (man).
type initSource struct {
	part   string
	src    api.InitSource
	ck     *hf.Checkpoint
	layout *hf.Layout
	man    *CheckpointManifest
	store  shard.ObjectStore // where man's objects are
	model  *models.Config    // the config the other job trained at, when recorded
	// A VQGAN file (part vqgan): LWM's pickle opened as a checkpoint, or
	// a Loom safetensors file, with the config it holds.
	vqCk   *hf.Checkpoint
	vqFile *safetensors.File
	vqCfg  vqgan.Config
}

// openVQGAN reads a vqgan source's file whole: LWM's pickled Flax params
// (pickle protocol 2-5, recognised by its first byte), read with LWM's
// architecture from the shapes and its 32 GroupNorm groups, or a
// safetensors file written by models.Save or loom export --format loom of
// a VQGAN model (parameters vqgan.*, the config in its metadata).
func (s *initSource) openVQGAN(ctx context.Context, j Job) error {
	uri := s.src.URI
	i := strings.LastIndex(uri, "/")
	if i < 0 || i == len(uri)-1 {
		return fmt.Errorf("want the URI of a file")
	}
	store, prefix, err := openLocation(ctx, j, uri[:i])
	if err != nil {
		return err
	}
	key := shard.JoinKey(prefix, uri[i+1:])
	info, err := store.Stat(ctx, key)
	if err != nil {
		return err
	}
	b, err := store.GetRange(ctx, key, 0, info.Size)
	if err != nil {
		return err
	}
	if len(b) > 0 && b[0] == 0x80 {
		if s.vqCk, err = hf.OpenPickle(ctx, uri, b); err != nil {
			return err
		}
		if s.vqCfg, err = hf.LWMVQGANConfig(s.vqCk); err != nil {
			return err
		}
		return s.vqCfg.Validate()
	}
	if s.vqFile, err = safetensors.Parse(b); err != nil {
		return err
	}
	cj, ok := s.vqFile.Metadata["config"]
	if !ok {
		return fmt.Errorf("a safetensors file without the \"config\" metadata models.Save writes; convert LWM's pickle with hf.ConvertLWMVQGAN and save it as a VQGAN model")
	}
	var mc models.Config
	if err := json.Unmarshal([]byte(cj), &mc); err != nil {
		return fmt.Errorf("metadata config: %w", err)
	}
	if mc.Family != models.VQGAN {
		return fmt.Errorf("the file holds a %s model, not a VQGAN", mc.Family)
	}
	s.vqCfg = mc.VQGAN
	return s.vqCfg.Validate()
}

// vqganSource is the init block's vqgan source, or nil.
func vqganSource(srcs []*initSource) *initSource {
	for _, s := range srcs {
		if s.part == "vqgan" {
			return s
		}
	}
	return nil
}

// loadVQGAN initialises an LWM job's image tokenizer (prefix "vqgan")
// from the vqgan source: a pickle through LWM's table, a Loom file or
// another job's checkpoint by name. Every parameter must be covered.
func (s *initSource) loadVQGAN(ctx context.Context, p *nn.Params) error {
	switch {
	case s.vqCk != nil:
		pl, err := hf.Load(ctx, s.vqCk, hf.LWMVQGANMapping(s.vqCfg, "vqgan"), p)
		if err != nil {
			return err
		}
		if len(pl.RandomInit) > 0 {
			return fmt.Errorf("%s leaves %d parameters at random, the first %s", s.src.URI, len(pl.RandomInit), pl.RandomInit[0])
		}
		return nil
	case s.vqFile != nil:
		_, err := p.Load(s.vqFile, nn.LoadOptions{})
		return err
	case s.man != nil:
		mf, err := readFiles(ctx, s.store, s.man, "model")
		if err != nil {
			return err
		}
		_, err = p.Load(mf, nn.LoadOptions{Only: []string{"vqgan.*"}})
		return err
	}
	return fmt.Errorf("init.vqgan: nothing to load")
}

// jobCheckpoint turns a resolved checkpoint into a reference in the store
// that holds it. The coordinator records objects as s3://BUCKET/KEY (the
// worker's form); such objects are read from that bucket, opened like a
// dataset, and plain keys from the job's own checkpoint store.
func jobCheckpoint(ctx context.Context, j Job, rc *api.ResolvedCheckpoint) (shard.ObjectStore, CheckpointRef, error) {
	ref := CheckpointRef{Step: rc.Step, Stage: rc.Stage}
	bucket := ""
	for i, o := range rc.Objects {
		path := o.Path
		if rest, ok := strings.CutPrefix(path, "s3://"); ok {
			b, key, _ := strings.Cut(rest, "/")
			if key == "" || (bucket != "" && b != bucket) {
				return nil, ref, fmt.Errorf("checkpoint step %d: objects[%d] %q: want s3://BUCKET/KEY in one bucket", rc.Step, i, path)
			}
			bucket, path = b, key
		} else if bucket != "" {
			return nil, ref, fmt.Errorf("checkpoint step %d: objects[%d] %q mixes keys and s3:// paths", rc.Step, i, path)
		}
		ref.Objects = append(ref.Objects, CheckpointObject{Path: path, SHA256: o.SHA256, Size: o.Size})
	}
	if bucket == "" {
		return j.Store, ref, nil
	}
	store, prefix, err := openLocation(ctx, j, "s3://"+bucket)
	if err != nil {
		return nil, ref, err
	}
	if prefix != "" {
		for i := range ref.Objects {
			ref.Objects[i].Path = shard.JoinKey(prefix, ref.Objects[i].Path)
		}
	}
	return store, ref, nil
}

func (s *initSource) String() string {
	if s.src.URI != "" {
		return s.src.URI
	}
	return fmt.Sprintf("job %s step %d", s.src.Job, s.man.Step)
}

// initParts orders the init block: the whole model first, so that a
// component source overrides its part of it.
func initParts(m *api.Manifest) []string {
	var out []string
	for k := range m.Init {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i] == "model") != (out[j] == "model") {
			return out[i] == "model"
		}
		return out[i] < out[j]
	})
	return out
}

// openInit opens every source of the manifest's init block (headers and
// manifests only; no weights are read).
func openInit(ctx context.Context, j Job, family models.Family) ([]*initSource, error) {
	var out []*initSource
	for _, part := range initParts(j.Manifest) {
		s := &initSource{part: part, src: j.Manifest.Init[part]}
		if err := partExists(part, family); err != nil {
			return nil, fmt.Errorf("trainer: init.%s: %w", part, err)
		}
		switch {
		case s.src.URI != "" && part == "vqgan":
			if err := s.openVQGAN(ctx, j); err != nil {
				return nil, fmt.Errorf("trainer: init.vqgan: %s: %w", s.src.URI, err)
			}
		case s.src.URI != "":
			store, prefix, err := openLocation(ctx, j, s.src.URI)
			if err != nil {
				return nil, fmt.Errorf("trainer: init.%s: %s: %w", part, s.src.URI, err)
			}
			if s.ck, err = hf.Open(ctx, StoreSource{Store: store, Prefix: prefix, Name: s.src.URI}); err != nil {
				return nil, fmt.Errorf("trainer: init.%s: %w", part, err)
			}
			if s.layout, err = hf.FindLayout(part, family, s.ck.Config()); err != nil {
				return nil, fmt.Errorf("trainer: init.%s: %s: %w", part, s.src.URI, err)
			}
		case s.src.Checkpoint == nil:
			return nil, fmt.Errorf("trainer: init.%s: job %q: no resolved checkpoint; the coordinator records it when the job is submitted", part, s.src.Job)
		default:
			store, ref, err := jobCheckpoint(ctx, j, s.src.Checkpoint)
			if err != nil {
				return nil, fmt.Errorf("trainer: init.%s: job %s: %w", part, s.src.Job, err)
			}
			s.store = store
			man, err := ReadCheckpoint(ctx, store, ref)
			if err != nil {
				return nil, fmt.Errorf("trainer: init.%s: job %s: %w", part, s.src.Job, err)
			}
			if man.Job != s.src.Job {
				return nil, fmt.Errorf("trainer: init.%s: the checkpoint at step %d belongs to job %q, not %q", part, s.src.Checkpoint.Step, man.Job, s.src.Job)
			}
			s.man = man
			if len(man.Model) > 0 {
				var mc models.Config
				if err := json.Unmarshal(man.Model, &mc); err != nil {
					return nil, fmt.Errorf("trainer: init.%s: job %s step %d: model config: %w", part, s.src.Job, man.Step, err)
				}
				s.model = &mc
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func openLocation(ctx context.Context, j Job, uri string) (shard.ObjectStore, string, error) {
	return openNamed(ctx, j, "init", uri)
}

// openNamed opens uri through the job's OpenDataset as a dataset of that
// name, or from the environment's S3 settings without one.
func openNamed(ctx context.Context, j Job, name, uri string) (shard.ObjectStore, string, error) {
	if j.OpenDataset != nil {
		return j.OpenDataset(ctx, api.Dataset{Name: name, URI: uri, Weight: 1})
	}
	loc, err := shard.ParseLocation(uri)
	if err != nil {
		return nil, "", err
	}
	return loc.Open(shard.S3ConfigFromEnv(shard.S3Config{}))
}

// partExists says whether a family's model has the part.
func partExists(part string, f models.Family) error {
	ok := false
	switch part {
	case "model":
		ok = true
	case "llm":
		ok = f != models.VQGAN
	case "vision":
		ok = f != models.LWM && f != models.VQGAN
	case "qformer":
		ok = f == models.BLIP2 || f == models.InstructBLIP
	case "vqgan":
		ok = f == models.LWM || f == models.VQGAN
	}
	if !ok {
		return fmt.Errorf("a %s model has no %s", f, part)
	}
	return nil
}

// partPatterns are the Loom parameters a part covers.
func partPatterns(part string, f models.Family) []string {
	switch part {
	case "llm":
		return []string{"llm.*"}
	case "vision":
		return []string{hf.VisionPrefix(f) + ".*"}
	case "qformer":
		return []string{"qformer.*"}
	case "vqgan":
		return []string{"vqgan.*"}
	}
	return nil // the whole model
}

// configure sets the shape of each initialised part from its source: a
// Hugging Face config.json, or the config another job trained at. It runs
// on the size preset, before the stage's own settings (resolution, RoPE θ,
// losses) are applied.
func configureInit(srcs []*initSource, cfg *models.Config) error {
	for _, s := range srcs {
		switch {
		case s.vqCk != nil || s.vqFile != nil:
			cfg.VQGAN = s.vqCfg
			if cfg.Family == models.LWM && s.vqCfg.Codebook != cfg.Codebook {
				// LWM's vision ids are the codes, then <eof>, <eov> and the
				// rest of the vision vocabulary.
				cfg.VisionVocab += s.vqCfg.Codebook - cfg.Codebook
				cfg.Codebook = s.vqCfg.Codebook
			}
		case s.layout != nil:
			if err := s.layout.Configure(s.ck.Config(), cfg); err != nil {
				return fmt.Errorf("init.%s: %s: %w", s.part, s.src.URI, err)
			}
		case s.model != nil:
			mc := *s.model
			switch s.part {
			case "model":
				if mc.Family != cfg.Family {
					return fmt.Errorf("init.model: job %s trained a %s model, this recipe builds %s; name the parts (llm, vision, ...) to take", s.src.Job, mc.Family, cfg.Family)
				}
				cfg.ViT, cfg.LLM, cfg.QFormer, cfg.VQGAN = mc.ViT, mc.LLM, mc.QFormer, mc.VQGAN
				cfg.Projector, cfg.Queries, cfg.QueryGrid, cfg.AdapterHeads = mc.Projector, mc.Queries, mc.QueryGrid, mc.AdapterHeads
				cfg.VisionVocab, cfg.Codebook = mc.VisionVocab, mc.Codebook
			case "llm":
				if mc.LLM.Hidden == 0 {
					return fmt.Errorf("init.llm: job %s's %s model has no LLM", s.src.Job, mc.Family)
				}
				cfg.LLM = mc.LLM
			case "vision":
				if mc.ViT.Width == 0 {
					return fmt.Errorf("init.vision: job %s's %s model has no vision tower", s.src.Job, mc.Family)
				}
				cfg.ViT = mc.ViT
			case "qformer":
				if mc.QFormer.Hidden == 0 {
					return fmt.Errorf("init.qformer: job %s's %s model has no Q-Former", s.src.Job, mc.Family)
				}
				// The heads and the text side are the family's and stage's.
				q := cfg.QFormer
				q.Hidden, q.Layers, q.Heads, q.Intermediate, q.MaxPos, q.Queries, q.CrossFreq, q.VisionWidth, q.EmbedDim =
					mc.QFormer.Hidden, mc.QFormer.Layers, mc.QFormer.Heads, mc.QFormer.Intermediate, mc.QFormer.MaxPos,
					mc.QFormer.Queries, mc.QFormer.CrossFreq, mc.QFormer.VisionWidth, mc.QFormer.EmbedDim
				cfg.QFormer = q
			case "vqgan":
				if mc.Family != models.VQGAN {
					return fmt.Errorf("init.vqgan: job %s trained a %s model, not a VQGAN", s.src.Job, mc.Family)
				}
				cfg.VQGAN = mc.VQGAN
				if cfg.Family == models.LWM && mc.VQGAN.Codebook != cfg.Codebook {
					cfg.VisionVocab += mc.VQGAN.Codebook - cfg.Codebook
					cfg.Codebook = mc.VQGAN.Codebook
				}
			}
		}
	}
	return nil
}

// InitPart reports what one init source loads.
type InitPart struct {
	Part   string
	Source string
	Layout string // the Hugging Face class, or "loom checkpoint"
	// Tensors lists what is read: checkpoint tensor, its shape and dtype,
	// bytes, and the Loom parameters it initialises.
	Tensors []InitTensor
	Bytes   int64
	// Ignored are checkpoint tensors read by nobody on purpose; Zeroed
	// parameters the layout fixes at zero.
	Ignored, Zeroed []string
	// Deferred says why the source does not apply to this stage (its part
	// appears in a later stage, or the earlier stage's checkpoint holds it).
	Deferred string `json:",omitempty"`
}

// InitTensor is one tensor an init source reads.
type InitTensor struct {
	Name  string
	Shape []int
	DType string
	Bytes int64
	Loom  []string
}

// InitReport is the whole init block's effect on the model.
type InitReport struct {
	Parts []InitPart
	// RandomInit are the model's parameters no source initialises: they
	// start from the seed.
	RandomInit []string
	Params     int // parameters of the model
	// Tokenizer is where the job's tokenizer files are ("": Loom's
	// byte-level tokenizer), and VocabSize its vocabulary with Loom's
	// special tokens.
	Tokenizer string
	VocabSize int
}

// loadInit initialises the model from the sources (load false: only plan
// and check, reading no weights). loaded are the parameters the stage
// already took from an earlier stage's checkpoint: a source applies to a
// stage when its part has parameters in the stage's model that the
// checkpoint did not give (every source at a job's first stage; BLIP-2's
// LLM at stage 2, where it first appears). A source whose part the stage's
// model lacks is reported as deferred.
func loadInit(ctx context.Context, j Job, srcs []*initSource, m models.Model, load bool, loaded map[string]bool) (*InitReport, error) {
	p := m.Params()
	cfg := m.Config()
	covered := map[string]bool{}
	for n := range loaded {
		covered[n] = true
	}
	rep := &InitReport{Params: p.Count()}
	for _, s := range srcs {
		ip := InitPart{Part: s.part, Source: s.String()}
		if s.part == "vqgan" && cfg.Family == models.LWM {
			ip.Layout, ip.Deferred = "LWM image tokenizer", "it is LWM's image tokenizer, loaded at every stage with the data pipeline, not a part of the model"
			rep.Parts = append(rep.Parts, ip)
			continue
		}
		pats := partPatterns(s.part, cfg.Family)
		has, fresh := false, false
		for _, n := range p.Names() {
			if pats == nil || nn.Match(n, pats...) {
				has = true
				fresh = fresh || !loaded[n]
			}
		}
		if !has || !fresh {
			if !has {
				ip.Deferred = "this stage's model has no " + s.part
			} else {
				ip.Deferred = "the earlier stage's checkpoint holds it"
			}
			rep.Parts = append(rep.Parts, ip)
			continue
		}
		if s.layout != nil {
			mp, err := s.layout.Mapping(cfg)
			if err != nil {
				return nil, fmt.Errorf("trainer: init.%s: %w", s.part, err)
			}
			var pl *hf.Plan
			if load {
				pl, err = hf.Load(ctx, s.ck, mp, p)
			} else {
				pl, err = hf.MakePlan(s.ck, mp, p)
			}
			if err != nil {
				return nil, fmt.Errorf("trainer: init.%s: %w", s.part, err)
			}
			ip.Layout, ip.Bytes, ip.Ignored, ip.Zeroed = s.layout.Name, pl.Bytes, pl.Ignored, pl.Zeroed
			for _, it := range pl.Items {
				ip.Tensors = append(ip.Tensors, InitTensor{Name: it.Tensor.Name, Shape: it.Tensor.Shape, DType: string(it.Tensor.DType),
					Bytes: it.Tensor.Bytes, Loom: it.Loom})
				for _, n := range it.Loom {
					covered[n] = true
				}
			}
			for _, n := range pl.Zeroed {
				covered[n] = true
			}
			// Rows of a padded vocabulary stay random.
			for _, r := range pl.RandomInit {
				if strings.Contains(r, " rows ") {
					rep.RandomInit = append(rep.RandomInit, r)
				}
			}
		} else {
			ip.Layout = "loom checkpoint"
			if err := loadJobPart(ctx, s, m, load, &ip, covered); err != nil {
				return nil, err
			}
		}
		rep.Parts = append(rep.Parts, ip)
	}
	for _, n := range p.Names() {
		if !covered[n] {
			rep.RandomInit = append(rep.RandomInit, n)
		}
	}
	return rep, nil
}

// loadJobPart copies a part's parameters from another job's checkpoint:
// every parameter of the part must be there with the same shape (errors
// name the object and the tensor); checkpoint tensors the model does not
// have (the other family's own modules) are left.
func loadJobPart(ctx context.Context, s *initSource, m models.Model, load bool, ip *InitPart, covered map[string]bool) error {
	p := m.Params()
	pats := partPatterns(s.part, m.Config().Family)
	shapes := map[string]bool{}
	for _, f := range s.man.Files {
		if f.Role == "model" {
			for name := range f.Tensors {
				shapes[name] = true
			}
		}
	}
	var want []string
	for _, n := range p.Names() {
		if pats == nil || nn.Match(n, pats...) {
			if !shapes[n] {
				return fmt.Errorf("trainer: init.%s: job %s step %d has no tensor %q", s.part, s.src.Job, s.man.Step, n)
			}
			want = append(want, n)
		}
	}
	if len(want) == 0 {
		return fmt.Errorf("trainer: init.%s: the model has no parameter matching %v", s.part, pats)
	}
	if !load {
		for _, n := range want {
			t := p.Get(n)
			ip.Tensors = append(ip.Tensors, InitTensor{Name: n, Shape: t.Shape, DType: "F32", Bytes: int64(4 * t.Size()), Loom: []string{n}})
			ip.Bytes += int64(4 * t.Size())
			covered[n] = true
		}
		return nil
	}
	mf, err := readFiles(ctx, s.store, s.man, "model")
	if err != nil {
		return fmt.Errorf("trainer: init.%s: job %s: %w", s.part, s.src.Job, err)
	}
	for _, n := range want {
		t := p.Get(n)
		info, _ := mf.Info(n)
		if !slices.Equal(info.Shape, t.Shape) {
			return fmt.Errorf("trainer: init.%s: job %s step %d: tensor %q is %v, the model's is %v", s.part, s.src.Job, s.man.Step, n, info.Shape, t.Shape)
		}
	}
	for _, n := range want {
		t := p.Get(n)
		v, err := mf.Float32(n)
		if err != nil {
			return fmt.Errorf("trainer: init.%s: job %s: %w", s.part, s.src.Job, err)
		}
		copy(t.Data, v)
		ip.Tensors = append(ip.Tensors, InitTensor{Name: n, Shape: t.Shape, DType: "F32", Bytes: int64(4 * len(v)), Loom: []string{n}})
		ip.Bytes += int64(4 * len(v))
		covered[n] = true
	}
	return nil
}

// StoreSource reads a Hugging Face directory under a prefix of an object
// store with range GETs (hf.Source), and writes one (hf.Sink).
type StoreSource struct {
	Store  shard.ObjectStore
	Prefix string
	Name   string // for messages; default the prefix
}

func (s StoreSource) key(name string) string { return shard.JoinKey(s.Prefix, name) }

// Size implements hf.Source.
func (s StoreSource) Size(ctx context.Context, name string) (int64, error) {
	info, err := s.Store.Stat(ctx, s.key(name))
	if errors.Is(err, shard.ErrNotFound) {
		return 0, fmt.Errorf("%s/%s: %w", s, name, fs.ErrNotExist)
	}
	if err != nil {
		return 0, err
	}
	return info.Size, nil
}

// ReadRange implements hf.Source.
func (s StoreSource) ReadRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	b, err := s.Store.GetRange(ctx, s.key(name), off, n)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != n {
		return nil, fmt.Errorf("%s/%s: %d bytes at %d, got %d", s, name, n, off, len(b))
	}
	return b, nil
}

// ReadRangeInto implements hf.RangeReaderInto: it fills buf, so that
// hf.Load reuses its read buffers instead of allocating one per range (with
// per-read buffers the collector lets garbage grow to the size of the
// loaded model). An S3 store streams the body into buf.
func (s StoreSource) ReadRangeInto(ctx context.Context, name string, off int64, buf []byte) error {
	key := s.key(name)
	if st, ok := s.Store.(interface {
		StreamRange(ctx context.Context, key string, off int64, buf []byte, progress func(int) error) error
	}); ok {
		return st.StreamRange(ctx, key, off, buf, func(int) error { return nil })
	}
	b, err := s.Store.GetRange(ctx, key, off, int64(len(buf)))
	if err != nil {
		return err
	}
	if len(b) != len(buf) {
		return fmt.Errorf("%s/%s: %d bytes at %d, got %d", s, name, len(buf), off, len(b))
	}
	copy(buf, b)
	return nil
}

// Put implements hf.Sink.
func (s StoreSource) Put(ctx context.Context, name string, data []byte) error {
	return s.Store.Put(ctx, s.key(name), bytes.NewReader(data), int64(len(data)))
}

func (s StoreSource) String() string {
	if s.Name != "" {
		return strings.TrimSuffix(s.Name, "/")
	}
	return s.Prefix
}

// initTokenizer is the tokenizer the job trains with: the directory its
// manifest's model.tokenizer names, else the tokenizer files of the init
// block's model or llm source (a Hugging Face directory, or the directory
// another job's checkpoint records), with Loom's special tokens that it
// lacks appended (tokenizer.WithSpecial; their embedding rows start at
// random). It returns the tokenizer's location too, which checkpoints
// record. nil when there is no model.tokenizer and no source has tokenizer
// files.
func initTokenizer(ctx context.Context, j Job, srcs []*initSource) (tokenizer.Tokenizer, string, error) {
	if uri := j.Manifest.Model.Tokenizer; uri != "" {
		store, prefix, err := openLocation(ctx, j, uri)
		if err != nil {
			return nil, "", fmt.Errorf("trainer: model.tokenizer %s: %w", uri, err)
		}
		t, err := openTokenizer(ctx, StoreSource{Store: store, Prefix: prefix, Name: uri}, uri)
		if err != nil {
			return nil, "", fmt.Errorf("trainer: model.tokenizer: %w", err)
		}
		return tokenizer.WithSpecial(t, tokenizer.DefaultSpecial), uri, nil
	}
	for _, s := range srcs {
		if s.part != "model" && s.part != "llm" {
			continue
		}
		var src hf.Source
		uri := ""
		switch {
		case s.ck != nil:
			src, uri = s.ck.Source(), s.src.URI
		case s.man != nil && s.man.Tokenizer != "":
			uri = s.man.Tokenizer
			store, prefix, err := openLocation(ctx, j, uri)
			if err != nil {
				return nil, "", fmt.Errorf("trainer: init.%s: job %s's tokenizer %s: %w", s.part, s.src.Job, uri, err)
			}
			src = StoreSource{Store: store, Prefix: prefix, Name: uri}
		default:
			continue
		}
		t, err := openTokenizer(ctx, src, uri)
		if errors.Is(err, tokenizer.ErrNoTokenizer) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("trainer: init.%s: %w", s.part, err)
		}
		return tokenizer.WithSpecial(t, tokenizer.DefaultSpecial), uri, nil
	}
	return nil, "", nil
}

// openTokenizer reads the tokenizer files of src (tokenizer.OpenFiles);
// uri names it in errors.
func openTokenizer(ctx context.Context, src hf.Source, uri string) (tokenizer.Pretrained, error) {
	return tokenizer.OpenFiles(uri, func(name string) ([]byte, error) {
		n, err := src.Size(ctx, name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return src.ReadRange(ctx, name, 0, n)
	})
}
