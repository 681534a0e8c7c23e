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
	"github.com/loomtrain/loom/models/hf"
)

//go:embed llava_step_torch.py
var llavaStepScript string

// LlavaStepOptions configures LlavaStep: one training step of LLaVA-1.5
// (the llava family: frozen CLIP tower, mlp2x_gelu projector, LLaMA
// decoder) in Loom and in PyTorch, on the same weights and batch.
type LlavaStepOptions struct {
	Size    string  `json:"size"`    // a models preset: tiny or small (default small)
	Stage   string  `json:"stage"`   // pretrain (the projector trains) or finetune (projector + LLM; default)
	Batch   int     `json:"batch"`   // rows, one image each (default 8)
	Text    int     `json:"text"`    // text tokens per row after the image (default 32)
	Threads int     `json:"threads"` // Loom's goroutines per op and torch's threads; 0 = GOMAXPROCS
	Steps   int     `json:"steps"`   // timed steps per side, alternating, after one warm-up each; the best counts (default 6)
	LR      float32 `json:"lr"`      // AdamW (default 2e-5, LLaVA-1.5's finetune)
	Python  string  `json:"python"`  // the interpreter with torch
	// RefDir holds the PyTorch reference transcriptions that models/hf's
	// tests check Loom against (models/hf/testdata of the repository).
	RefDir string `json:"ref_dir"`
	Seed   uint64 `json:"seed"`
}

// LlavaStepResult is what LlavaStep measured.
type LlavaStepResult struct {
	Options   LlavaStepOptions `json:"options"`
	Params    int              `json:"params"`
	Trainable int              `json:"trainable"`
	Tokens    int              `json:"tokens_per_row"` // image positions + text
	Kernel    string           `json:"gemm_kernel"`
	CPU       string           `json:"cpu"`
	// LoomLoss and TorchLoss are the loss of the first forward, before
	// any update: the same model on the same batch must agree.
	LoomLoss     float64          `json:"loom_first_loss"`
	TorchLoss    float64          `json:"torch_first_loss"`
	LossRelDiff  float64          `json:"first_loss_rel_diff"`
	TorchParams  int              `json:"torch_params"`
	TorchTrain   int              `json:"torch_trainable"`
	TorchVersion string           `json:"torch_version"`
	TorchBLAS    kbench.Baseline  `json:"torch_blas"`
	WaitPolicy   string           `json:"omp_wait_policy"`
	LoomSeconds  float64          `json:"loom_seconds"`
	TorchSeconds float64          `json:"torch_seconds"`
	Ratio        float64          `json:"ratio_time_loom_over_torch"` // ≤ 0.8 meets the target
	LastLosses   [2]float64       `json:"last_losses"`                // Loom's and PyTorch's after the timed steps
	Export       *hf.ExportResult `json:"-"`
}

// LossTolerance is how far the two first losses may differ (relative):
// float32 on both sides, different summation orders.
const LossTolerance = 1e-4

func (o *LlavaStepOptions) defaults() {
	if o.Size == "" {
		o.Size = "small"
	}
	if o.Stage == "" {
		o.Stage = "finetune"
	}
	if o.Batch == 0 {
		o.Batch = 8
	}
	if o.Text == 0 {
		o.Text = 32
	}
	if o.Steps == 0 {
		o.Steps = 6
	}
	if o.LR == 0 {
		o.LR = 2e-5
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
}

// LlavaStep builds Loom's LLaVA at o.Size, exports it as a Hugging Face
// LlavaForConditionalGeneration directory, starts the PyTorch step on it
// (trainer/hfbench/llava_step_torch.py), checks that both sides' first
// loss agree within LossTolerance, then alternates training steps (zero
// grads, forward, backward, AdamW) and keeps each side's best.
func LlavaStep(ctx context.Context, o LlavaStepOptions) (*LlavaStepResult, error) {
	o.defaults()
	if o.Stage != "pretrain" && o.Stage != "finetune" {
		return nil, fmt.Errorf("hfbench: llava step: stage %q: want pretrain or finetune", o.Stage)
	}
	if _, err := os.Stat(filepath.Join(o.RefDir, "gen_llava.py")); err != nil {
		return nil, fmt.Errorf("hfbench: llava step: the PyTorch reference: %v (run from the repository root, or name models/hf/testdata)", err)
	}
	cfg, err := models.Preset(models.LLaVA, o.Size)
	if err != nil {
		return nil, err
	}
	cfg.LabelSmoothing = 0 // LlavaForConditionalGeneration's loss has none
	cfg.Stage = 2
	m, err := models.New(cfg, o.Seed)
	if err != nil {
		return nil, err
	}
	if o.Stage == "pretrain" {
		if _, err := m.Params().Freeze("llm.*"); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "loom-llava-step-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	js, err := hf.LlavaConfigJSON(cfg)
	if err != nil {
		return nil, err
	}
	mp, err := hf.LlavaMapping(cfg)
	if err != nil {
		return nil, err
	}
	exp, err := hf.Export(ctx, hf.Dir(dir), mp, m.Params(), hf.ExportOptions{Files: map[string][]byte{hf.ConfigFile: js}, ShardBytes: 1 << 40})
	if err != nil {
		return nil, err
	}
	batch, expanded := llavaBatch(cfg, o)
	bj, err := json.Marshal(map[string]any{"pixel_values": batch.Images.Data, "shape": batch.Images.Shape, "input_ids": expanded})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "batch.json"), bj, 0o644); err != nil {
		return nil, err
	}

	prev := kernels.MaxThreads()
	kernels.SetMaxThreads(o.Threads)
	defer kernels.SetMaxThreads(prev)
	o.Threads = kernels.MaxThreads()
	res := &LlavaStepResult{Options: o, Tokens: len(expanded[0]), Kernel: kernels.GemmKernel(), CPU: kbench.CPUModel(),
		Params: m.Params().Count(), LoomSeconds: math.Inf(1), TorchSeconds: math.Inf(1), Export: exp, WaitPolicy: kbench.WaitPolicy()}
	train := m.Params().Trainable()
	for _, p := range train {
		res.Trainable += p.Size()
	}
	opt := kernels.NewAdamW(train, kernels.AdamWConfig{LR: o.LR, WeightDecay: 0})
	step := func() (float64, float64, error) {
		t0 := time.Now()
		m.Params().ZeroGrad()
		tp := kernels.NewTape()
		out, err := m.Forward(tp, batch)
		if err != nil {
			return 0, 0, err
		}
		tp.Backward(out.Loss)
		opt.Step()
		return time.Since(t0).Seconds(), float64(out.Terms["lm"]), nil
	}
	first, err := m.Forward(nil, batch)
	if err != nil {
		return nil, err
	}
	res.LoomLoss = float64(first.Terms["lm"])

	arg, _ := json.Marshal(map[string]any{"threads": o.Threads, "stage": o.Stage, "lr": o.LR, "weight_decay": 0.0})
	proc, err := kbench.StartProc(o.Python, llavaStepScript, kbench.BaselineEnv(o.Threads, kbench.DefaultCoreType()), dir, o.RefDir, string(arg))
	if err != nil {
		return nil, err
	}
	defer proc.Close()
	var hello struct {
		Params    int             `json:"params"`
		Trainable int             `json:"trainable"`
		Loss      float64         `json:"loss"`
		Torch     string          `json:"torch"`
		Threads   int             `json:"threads"`
		BLAS      kbench.BLASInfo `json:"blas"`
	}
	if err := proc.Read(&hello); err != nil {
		return nil, err
	}
	res.TorchParams, res.TorchTrain, res.TorchLoss, res.TorchVersion = hello.Params, hello.Trainable, hello.Loss, hello.Torch
	if res.TorchBLAS, err = kbench.BaselineBLAS(fmt.Sprintf("PyTorch %s (%s)", hello.Torch, o.Python), hello.BLAS); err != nil {
		return nil, fmt.Errorf("hfbench: %w", err)
	}
	if hello.Threads != o.Threads {
		return nil, fmt.Errorf("hfbench: PyTorch runs %d threads, not the %d asked for", hello.Threads, o.Threads)
	}
	if res.TorchTrain != res.Trainable || res.TorchParams != res.Params {
		return res, fmt.Errorf("hfbench: PyTorch trains %d of %d parameters, Loom %d of %d: not the same step", res.TorchTrain, res.TorchParams, res.Trainable, res.Params)
	}
	res.LossRelDiff = math.Abs(res.LoomLoss-res.TorchLoss) / math.Abs(res.TorchLoss)
	if !(res.LossRelDiff <= LossTolerance) {
		return res, fmt.Errorf("hfbench: first loss: Loom %.7g, PyTorch %.7g (relative %.2g > %g): not the same model", res.LoomLoss, res.TorchLoss, res.LossRelDiff, LossTolerance)
	}
	// One warm-up each, then alternate step by step so both see the same load.
	if _, _, err := step(); err != nil {
		return nil, err
	}
	if _, _, err := proc.Step(); err != nil {
		return nil, err
	}
	for range o.Steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t, l, err := step()
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

// llavaBatch is o.Batch rows of [BOS, image, o.Text random ordinary ids] with
// random images, and the same rows as LlavaForConditionalGeneration reads
// them: the image placeholder repeated TokensPerImage times.
func llavaBatch(cfg models.Config, o LlavaStepOptions) (*models.Batch, [][]int64) {
	rng := rand.New(rand.NewPCG(o.Seed, 11))
	s := cfg.ImageSize
	px := make([]float32, o.Batch*3*s*s)
	for i := range px {
		px[i] = float32(rng.NormFloat64())
	}
	img := kernels.New(px, o.Batch, 3, s, s)
	sp := cfg.Special
	ordinary := min(sp.Pad, sp.BOS, sp.EOS, sp.Image, sp.ImgStart, sp.ImgEnd, sp.VisionBeg, sp.VisionEnd, sp.Dec) // the specials sit at the top
	var rows [][]int32
	var expanded [][]int64
	k := cfg.TokensPerImage()
	for range o.Batch {
		row := []int32{sp.BOS, sp.Image}
		ex := []int64{int64(sp.BOS)}
		for range k {
			ex = append(ex, int64(sp.Image))
		}
		for range o.Text {
			id := int32(rng.IntN(int(ordinary)))
			row = append(row, id)
			ex = append(ex, int64(id))
		}
		rows, expanded = append(rows, row), append(expanded, ex)
	}
	return &models.Batch{Images: img, Tokens: rows}, expanded
}
