package hfbench

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/loomtrain/loom/kernels"
	"github.com/loomtrain/loom/kernels/kbench"
	"github.com/loomtrain/loom/models"
)

//go:embed blip2_step_torch.py
var blip2StepScript string

// Blip2StepOptions configures Blip2Step: one BLIP-2 stage-1 training step
// (frozen ViT, ln_vision and Q-Former training on ITC + ITM + ITG) in Loom
// and in PyTorch, on the same weights and batch.
type Blip2StepOptions struct {
	Size    string  `json:"size"`    // a models preset: tiny or small (default small)
	Batch   int     `json:"batch"`   // rows, one image and one caption each (default 8, at least 4)
	Text    int     `json:"text"`    // longest caption in tokens, [CLS] included (default 24); rows vary from half of it
	Threads int     `json:"threads"` // Loom's goroutines per op and torch's threads; 0 = GOMAXPROCS
	Steps   int     `json:"steps"`   // timed steps per side, alternating, after one warm-up each; the best counts (default 6)
	LR      float32 `json:"lr"`      // AdamW (default 1e-4, the recipe's peak; β (0.9, 0.98), weight decay 0.05 on weights)
	Python  string  `json:"python"`  // the interpreter with torch
	Seed    uint64  `json:"seed"`
}

// Blip2StepResult is what Blip2Step measured.
type Blip2StepResult struct {
	Options   Blip2StepOptions `json:"options"`
	Params    int              `json:"params"`
	Trainable int              `json:"trainable"`
	Kernel    string           `json:"gemm_kernel"`
	CPU       string           `json:"cpu"`
	// LoomLosses and TorchLosses are the terms (itc, itm, itg) and their
	// sum (loss) of the first forward, before any update, with the hard
	// negatives Loom drew; RelDiff is each term's relative difference.
	LoomLosses   map[string]float64 `json:"loom_first_losses"`
	TorchLosses  map[string]float64 `json:"torch_first_losses"`
	RelDiff      map[string]float64 `json:"first_loss_rel_diff"`
	TorchParams  int                `json:"torch_params"`
	TorchTrain   int                `json:"torch_trainable"`
	TorchVersion string             `json:"torch_version"`
	TorchBLAS    kbench.Baseline    `json:"torch_blas"`
	WaitPolicy   string             `json:"omp_wait_policy"`
	LoomSeconds  float64            `json:"loom_seconds"`
	TorchSeconds float64            `json:"torch_seconds"`
	Ratio        float64            `json:"ratio_time_loom_over_torch"` // ≤ 0.8 meets the target
	// LastLosses are Loom's and PyTorch's total loss at the last timed
	// step. From the second step on each side draws its own ITM
	// negatives, so they agree only loosely.
	LastLosses [2]float64 `json:"last_losses"`
}

// Blip2Terms are the loss terms Blip2Step compares, and their sum.
var Blip2Terms = []string{"itc", "itm", "itg", "loss"}

func (o *Blip2StepOptions) defaults() {
	if o.Size == "" {
		o.Size = "small"
	}
	if o.Batch == 0 {
		o.Batch = 8
	}
	if o.Text == 0 {
		o.Text = 24
	}
	if o.Steps == 0 {
		o.Steps = 6
	}
	if o.LR == 0 {
		o.LR = 1e-4
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
}

// blip2Step is Loom's BLIP-2 stage-1 model, batch and optimiser as
// Blip2Step and BenchmarkBlip2StepLoom run them.
type blip2Step struct {
	cfg   models.Config
	m     models.Model
	batch *models.Batch
	opt   *kernels.AdamW
}

func newBlip2Step(o Blip2StepOptions) (*blip2Step, error) {
	if o.Batch < 4 {
		return nil, fmt.Errorf("hfbench: blip2 step: batch %d: want at least 4 rows (ITM's negatives, a repeated caption, a repeated image)", o.Batch)
	}
	cfg, err := models.Preset(models.BLIP2, o.Size)
	if err != nil {
		return nil, err
	}
	if o.Text < 2 || o.Text > cfg.QFormer.MaxPos {
		return nil, fmt.Errorf("hfbench: blip2 step: text %d: want 2 to the Q-Former's max_pos %d", o.Text, cfg.QFormer.MaxPos)
	}
	m, err := models.New(cfg, o.Seed)
	if err != nil {
		return nil, err
	}
	opt := kernels.NewAdamW(m.Params().Trainable(), kernels.AdamWConfig{LR: o.LR, Beta1: 0.9, Beta2: 0.98, WeightDecay: 0.05})
	return &blip2Step{cfg: cfg, m: m, batch: blip2Batch(cfg, o), opt: opt}, nil
}

// step is one timed training step; it returns its seconds and total loss.
func (s *blip2Step) step() (float64, float64, error) {
	t0 := time.Now()
	s.m.Params().ZeroGrad()
	tp := kernels.NewTape()
	out, err := s.m.Forward(tp, s.batch)
	if err != nil {
		return 0, 0, err
	}
	tp.Backward(out.Loss)
	s.opt.Step()
	return time.Since(t0).Seconds(), float64(out.Terms["loss"]), nil
}

// Blip2Step builds Loom's BLIP-2 stage 1 at o.Size, saves its parameters
// (Loom's safetensors names), starts the PyTorch step on them
// (trainer/hfbench/blip2_step_torch.py) with the batch and the ITM hard
// negatives Loom's first forward drew, checks that each loss term agrees
// within LossTolerance, then alternates training steps (zero grads,
// forward, backward, AdamW) and keeps each side's best.
func Blip2Step(ctx context.Context, o Blip2StepOptions) (*Blip2StepResult, error) {
	o.defaults()
	s, err := newBlip2Step(o)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "loom-blip2-step-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := s.m.Params().SaveFile(filepath.Join(dir, "params.safetensors"), nil); err != nil {
		return nil, err
	}

	prev := kernels.MaxThreads()
	kernels.SetMaxThreads(o.Threads)
	defer kernels.SetMaxThreads(prev)
	o.Threads = kernels.MaxThreads()
	res := &Blip2StepResult{Options: o, Kernel: kernels.GemmKernel(), CPU: kbench.CPUModel(), Params: s.m.Params().Count(),
		LoomSeconds: math.Inf(1), TorchSeconds: math.Inf(1), WaitPolicy: kbench.WaitPolicy(),
		LoomLosses: map[string]float64{}, TorchLosses: map[string]float64{}, RelDiff: map[string]float64{}}
	for _, p := range s.m.Params().Trainable() {
		res.Trainable += p.Size()
	}
	first, err := s.m.Forward(nil, s.batch)
	if err != nil {
		return nil, err
	}
	if first.NegImages == nil || first.NegTexts == nil {
		return nil, fmt.Errorf("hfbench: blip2 step: Loom's forward reported no ITM negatives")
	}
	for _, k := range Blip2Terms {
		res.LoomLosses[k] = float64(first.Terms[k])
	}
	b := s.batch
	bj, err := json.Marshal(map[string]any{"pixel_values": b.Images.Data, "shape": b.Images.Shape, "tokens": b.Tokens, "image_keys": b.ImageKeys,
		"neg_img": first.NegImages, "neg_txt": first.NegTexts})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "batch.json"), bj, 0o644); err != nil {
		return nil, err
	}
	c := s.cfg
	arg, _ := json.Marshal(map[string]any{"threads": o.Threads, "lr": o.LR, "beta1": 0.9, "beta2": 0.98, "weight_decay": 0.05,
		"heads": c.QFormer.Heads, "vit_heads": c.ViT.Heads, "cross_freq": c.QFormer.CrossFreq, "queries": c.QFormer.Queries,
		"label_smoothing": c.AppliedLabelSmoothing(), "pad": c.Special.Pad, "dec": c.Special.Dec})
	proc, err := kbench.StartProc(o.Python, blip2StepScript, kbench.BaselineEnv(o.Threads, kbench.DefaultCoreType()), dir, string(arg))
	if err != nil {
		return nil, err
	}
	defer proc.Close()
	var hello struct {
		Params    int                `json:"params"`
		Trainable int                `json:"trainable"`
		Losses    map[string]float64 `json:"losses"`
		Torch     string             `json:"torch"`
		Threads   int                `json:"threads"`
		BLAS      kbench.BLASInfo    `json:"blas"`
	}
	if err := proc.Read(&hello); err != nil {
		return nil, err
	}
	res.TorchParams, res.TorchTrain, res.TorchLosses, res.TorchVersion = hello.Params, hello.Trainable, hello.Losses, hello.Torch
	if res.TorchBLAS, err = kbench.BaselineBLAS(fmt.Sprintf("PyTorch %s (%s)", hello.Torch, o.Python), hello.BLAS); err != nil {
		return nil, fmt.Errorf("hfbench: %w", err)
	}
	if hello.Threads != o.Threads {
		return nil, fmt.Errorf("hfbench: PyTorch runs %d threads, not the %d asked for", hello.Threads, o.Threads)
	}
	if res.TorchTrain != res.Trainable || res.TorchParams != res.Params {
		return res, fmt.Errorf("hfbench: PyTorch trains %d of %d parameters, Loom %d of %d: not the same step", res.TorchTrain, res.TorchParams, res.Trainable, res.Params)
	}
	for _, k := range Blip2Terms {
		tv, ok := res.TorchLosses[k]
		if !ok {
			return res, fmt.Errorf("hfbench: PyTorch reported no %s loss", k)
		}
		res.RelDiff[k] = math.Abs(res.LoomLosses[k]-tv) / math.Abs(tv)
		if !(res.RelDiff[k] <= LossTolerance) {
			return res, fmt.Errorf("hfbench: first %s loss: Loom %.7g, PyTorch %.7g (relative %.2g > %g): not the same step", k, res.LoomLosses[k], tv, res.RelDiff[k], LossTolerance)
		}
	}
	// One warm-up each, then alternate step by step so both see the same load.
	if _, _, err := s.step(); err != nil {
		return nil, err
	}
	if _, _, err := proc.Step(); err != nil {
		return nil, err
	}
	for range o.Steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t, l, err := s.step()
		if err != nil {
			return nil, err
		}
		res.LoomSeconds, res.LastLosses[0] = min(res.LoomSeconds, t), l
		pt, pl, err := proc.Step()
		if err != nil {
			return nil, err
		}
		res.TorchSeconds, res.LastLosses[1] = min(res.TorchSeconds, pt), pl
	}
	res.Ratio = res.LoomSeconds / res.TorchSeconds
	return res, nil
}

// blip2Batch is o.Batch rows of random images and captions [BOS, ordinary
// ids…] of o.Text/2 to o.Text tokens, with image keys; the last row
// repeats the first row's caption (another image) and the one before it
// the second row's image key (other pixels, as two crops of one image;
// another caption), so that ITC's soft targets and ITM's exclusion of
// positives take part. (Where the positives' features are equal, as rows
// of one caption's, the soft targets' loss equals the hard targets'.)
func blip2Batch(cfg models.Config, o Blip2StepOptions) *models.Batch {
	rng := rand.New(rand.NewPCG(o.Seed, 13))
	s := cfg.ImageSize
	px := make([]float32, o.Batch*3*s*s)
	for i := range px {
		px[i] = float32(rng.NormFloat64())
	}
	sp := cfg.Special
	ordinary := min(sp.Pad, sp.BOS, sp.EOS, sp.Dec)
	rows := make([][]int32, o.Batch)
	keys := make([]uint64, o.Batch)
	for r := range rows {
		keys[r] = uint64(r + 1)
		if r == o.Batch-1 {
			rows[r] = rows[0]
			break
		}
		n := o.Text/2 + rng.IntN(o.Text-o.Text/2+1)
		row := []int32{sp.BOS}
		for len(row) < max(n, 2) {
			row = append(row, int32(rng.IntN(int(ordinary))))
		}
		rows[r] = row
	}
	keys[o.Batch-2] = keys[1]
	return &models.Batch{Images: kernels.New(px, o.Batch, 3, s, s), Tokens: rows, ImageKeys: keys, Seed: o.Seed}
}
