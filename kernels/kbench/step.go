package kbench

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os/exec"
	"time"

	"github.com/loomtrain/loom/kernels"
)

//go:embed step_torch.py
var torchStepScript string

// StepConfig configures BenchStep: a GPT-style pre-norm transformer
// (learned positions, LayerNorm, causal attention, GELU MLP of 4·Dim, an
// untied LM head), one AdamW training step on random tokens.
type StepConfig struct {
	Layers  int    `json:"layers"`
	Dim     int    `json:"dim"`
	Heads   int    `json:"heads"`
	Seq     int    `json:"seq"`
	Batch   int    `json:"batch"`
	Vocab   int    `json:"vocab"`
	Threads int    `json:"threads"` // goroutines per op, and torch.set_num_threads; 0 = GOMAXPROCS
	Steps   int    `json:"steps"`   // timed steps per contender (after one warm-up each), alternating; the best counts
	Python  string `json:"python"`  // the interpreter for the PyTorch baseline; "" skips it
}

// StepResult is the outcome of BenchStep.
type StepResult struct {
	Config       StepConfig `json:"config"`
	Params       int        `json:"params"`
	Kernel       string     `json:"gemm_kernel"`
	LoomSeconds  float64    `json:"loom_seconds"`
	LoomLoss     float64    `json:"loom_loss"`
	TorchSeconds float64    `json:"torch_seconds,omitempty"`
	TorchParams  int        `json:"torch_params,omitempty"`
	TorchVersion string     `json:"torch_version,omitempty"`
	TorchThreads int        `json:"torch_threads,omitempty"`
	WaitPolicy   string     `json:"omp_wait_policy,omitempty"` // the baseline's OMP_WAIT_POLICY
	// TorchBLAS is the BLAS and OpenMP PyTorch runs on; a reference BLAS
	// is refused (ReferenceBLASError).
	TorchBLAS *Baseline `json:"torch_blas,omitempty"`
	CPU       string    `json:"cpu"` // CPUModel
	// Ratio is loom time / torch time (lower is better; ≤ 1 meets the target).
	Ratio float64 `json:"ratio_time_loom_over_torch,omitempty"`
}

type blockParams struct {
	ln1W, ln1B, qkvW, qkvB, projW, projB, ln2W, ln2B, fcW, fcB, fc2W, fc2B *kernels.Tensor
}

// StepModel is the benchmark transformer, built from kernels ops.
type StepModel struct {
	cfg                  StepConfig
	wte, wpe, lnfW, lnfB *kernels.Tensor
	head                 *kernels.Tensor
	blocks               []blockParams
	Params               []*kernels.Tensor
}

// NewStepModel initialises the model deterministically (GPT-2 style: N(0, 0.02)).
func NewStepModel(cfg StepConfig) *StepModel {
	rng := rand.New(rand.NewPCG(1, 2))
	m := &StepModel{cfg: cfg}
	p := func(name string, std float32, shape ...int) *kernels.Tensor {
		t := kernels.NewParam(name, shape...).InitNormal(rng, std)
		m.Params = append(m.Params, t)
		return t
	}
	ones := func(name string, n int) *kernels.Tensor {
		t := kernels.NewParam(name, n).Fill(1)
		m.Params = append(m.Params, t)
		return t
	}
	d := cfg.Dim
	m.wte, m.wpe = p("wte", 0.02, cfg.Vocab, d), p("wpe", 0.02, cfg.Seq, d)
	for l := 0; l < cfg.Layers; l++ {
		n := fmt.Sprintf("blocks.%d.", l)
		m.blocks = append(m.blocks, blockParams{
			ln1W: ones(n+"ln1.weight", d), ln1B: p(n+"ln1.bias", 0, d),
			qkvW: p(n+"qkv.weight", 0.02, 3*d, d), qkvB: p(n+"qkv.bias", 0, 3*d),
			projW: p(n+"proj.weight", 0.02, d, d), projB: p(n+"proj.bias", 0, d),
			ln2W: ones(n+"ln2.weight", d), ln2B: p(n+"ln2.bias", 0, d),
			fcW: p(n+"fc.weight", 0.02, 4*d, d), fcB: p(n+"fc.bias", 0, 4*d),
			fc2W: p(n+"fc2.weight", 0.02, d, 4*d), fc2B: p(n+"fc2.bias", 0, d),
		})
	}
	m.lnfW, m.lnfB = ones("lnf.weight", d), p("lnf.bias", 0, d)
	m.head = p("head.weight", 0.02, cfg.Vocab, d)
	return m
}

// Loss runs the forward pass of ids [Batch·Seq] and returns the mean
// cross-entropy against targets.
func (m *StepModel) Loss(tp *kernels.Tape, ids, targets []int32) *kernels.Tensor {
	c := m.cfg
	b, s, d, h := c.Batch, c.Seq, c.Dim, c.Heads
	pos := make([]int32, s)
	for i := range pos {
		pos[i] = int32(i)
	}
	x := tp.Add(tp.Reshape(tp.Embedding(m.wte, ids), b, s, d), tp.Embedding(m.wpe, pos))
	for _, bp := range m.blocks {
		hn := tp.LayerNorm(x, bp.ln1W, bp.ln1B, 1e-5)
		qkv := tp.Split(tp.Linear(hn, bp.qkvW, bp.qkvB), -1, d, d, d)
		heads := func(t *kernels.Tensor) *kernels.Tensor { return tp.Reshape(t, b, s, h, d/h) }
		a := tp.Attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), kernels.AttnOptions{Causal: true})
		x = tp.Add(x, tp.Linear(tp.Reshape(a, b, s, d), bp.projW, bp.projB))
		hn = tp.LayerNorm(x, bp.ln2W, bp.ln2B, 1e-5)
		x = tp.Add(x, tp.Linear(tp.GELU(tp.Linear(hn, bp.fcW, bp.fcB)), bp.fc2W, bp.fc2B))
	}
	logits := tp.Linear(tp.LayerNorm(x, m.lnfW, m.lnfB, 1e-5), m.head, nil)
	return tp.CrossEntropy(logits, targets, kernels.CEOptions{})
}

func (c *StepConfig) check() error {
	if c.Layers <= 0 || c.Dim <= 0 || c.Heads <= 0 || c.Seq <= 0 || c.Batch <= 0 || c.Vocab <= 0 {
		return fmt.Errorf("kbench: step: layers, dim, heads, seq, batch and vocab must be positive (%+v)", *c)
	}
	if c.Dim%c.Heads != 0 {
		return fmt.Errorf("kbench: step: dim %d is not a multiple of heads %d", c.Dim, c.Heads)
	}
	if c.Steps <= 0 {
		c.Steps = 3
	}
	return nil
}

// BenchStep times one training step (zero grads, forward, backward, AdamW)
// of the model in kernels and, when cfg.Python is set, of the same model
// in PyTorch, alternating the two.
func BenchStep(cfg StepConfig) (StepResult, error) {
	if err := cfg.check(); err != nil {
		return StepResult{}, err
	}
	kernels.SetMaxThreads(cfg.Threads)
	defer kernels.SetMaxThreads(0)
	cfg.Threads = kernels.MaxThreads()
	m := NewStepModel(cfg)
	opt := kernels.NewAdamW(m.Params, kernels.AdamWConfig{LR: 1e-4, WeightDecay: 0.1})
	rng := rand.New(rand.NewPCG(3, 4))
	ids, tgt := make([]int32, cfg.Batch*cfg.Seq), make([]int32, cfg.Batch*cfg.Seq)
	for i := range ids {
		ids[i], tgt[i] = int32(rng.IntN(cfg.Vocab)), int32(rng.IntN(cfg.Vocab))
	}
	res := StepResult{Config: cfg, Kernel: kernels.GemmKernel(), CPU: CPUModel(), LoomSeconds: math.Inf(1), TorchSeconds: math.Inf(1)}
	for _, p := range m.Params {
		res.Params += p.Size()
	}
	step := func() float64 {
		t0 := time.Now()
		for _, p := range m.Params {
			p.ZeroGrad()
		}
		tp := kernels.NewTape()
		loss := m.Loss(tp, ids, tgt)
		tp.Backward(loss)
		opt.Step()
		res.LoomLoss = float64(loss.Item())
		return time.Since(t0).Seconds()
	}
	step() // warm up
	var torch *torchProc
	if cfg.Python != "" {
		var err error
		if torch, err = startTorch(cfg); err != nil {
			return res, err
		}
		defer torch.Close()
		res.TorchParams, res.TorchVersion, res.TorchThreads, res.TorchBLAS = torch.params, torch.version, torch.threads, &torch.blas
		res.WaitPolicy = WaitPolicy()
		if _, _, err := torch.Step(); err != nil { // warm up
			return res, err
		}
	}
	// Alternate step by step, so that both sides see the same load.
	for i := 0; i < cfg.Steps; i++ {
		res.LoomSeconds = math.Min(res.LoomSeconds, step())
		if torch != nil {
			t, _, err := torch.Step()
			if err != nil {
				return res, err
			}
			res.TorchSeconds = math.Min(res.TorchSeconds, t)
		}
	}
	if torch == nil {
		res.TorchSeconds = 0
	} else {
		res.Ratio = res.LoomSeconds / res.TorchSeconds
	}
	return res, nil
}

// torchProc is the PyTorch baseline of BenchStep.
type torchProc struct {
	*Proc
	params  int
	version string
	threads int
	blas    Baseline
}

func startTorch(cfg StepConfig) (*torchProc, error) {
	arg, _ := json.Marshal(map[string]int{"layers": cfg.Layers, "dim": cfg.Dim, "heads": cfg.Heads, "seq": cfg.Seq,
		"batch": cfg.Batch, "vocab": cfg.Vocab, "threads": cfg.Threads})
	proc, err := StartProc(cfg.Python, torchStepScript, BaselineEnv(cfg.Threads, DefaultCoreType()), string(arg))
	if err != nil {
		return nil, err
	}
	p := &torchProc{Proc: proc}
	var hello struct {
		Params  int      `json:"params"`
		Torch   string   `json:"torch"`
		Threads int      `json:"threads"`
		BLAS    BLASInfo `json:"blas"`
	}
	if err := p.Read(&hello); err != nil {
		p.Close()
		return nil, err
	}
	p.params, p.version, p.threads = hello.Params, hello.Torch, hello.Threads
	if p.blas, err = BaselineBLAS(fmt.Sprintf("PyTorch %s (%s)", hello.Torch, cfg.Python), hello.BLAS); err != nil {
		p.Close()
		return nil, fmt.Errorf("kbench: %w", err)
	}
	if hello.Threads != cfg.Threads {
		p.Close()
		return nil, fmt.Errorf("kbench: PyTorch runs %d threads, not the %d asked for", hello.Threads, cfg.Threads)
	}
	return p, nil
}

// Proc is a baseline running as a child process: python -c BLASProbe+script
// args..., which answers one JSON line per request line on its stdin.
type Proc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	errb *bytes.Buffer
	name string
}

// StartProc starts python on BLASProbe+script with env (BaselineEnv).
func StartProc(python, script string, env []string, args ...string) (*Proc, error) {
	cmd := exec.Command(python, append([]string{"-c", BLASProbe + script}, args...)...)
	cmd.Env = env
	p := &Proc{cmd: cmd, errb: &bytes.Buffer{}, name: python}
	cmd.Stderr = p.errb
	var err error
	if p.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewScanner(stdout)
	p.out.Buffer(make([]byte, 64<<10), 16<<20)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("kbench: baseline (%s): %v", python, err)
	}
	return p, nil
}

// Read decodes the child's next line into v.
func (p *Proc) Read(v any) error {
	if !p.out.Scan() {
		_ = p.cmd.Wait()
		return fmt.Errorf("kbench: baseline %s exited: %s", p.name, bytes.TrimSpace(p.errb.Bytes()))
	}
	if err := json.Unmarshal(p.out.Bytes(), v); err != nil {
		return fmt.Errorf("kbench: baseline %s printed %q: %v", p.name, p.out.Text(), err)
	}
	return nil
}

// Step asks for one step and returns its time in seconds and its loss.
func (p *Proc) Step() (seconds, loss float64, err error) {
	if _, err := io.WriteString(p.in, "step\n"); err != nil {
		return 0, 0, fmt.Errorf("kbench: baseline %s: %v: %s", p.name, err, bytes.TrimSpace(p.errb.Bytes()))
	}
	var r struct {
		Seconds float64 `json:"seconds"`
		Loss    float64 `json:"loss"`
	}
	err = p.Read(&r)
	return r.Seconds, r.Loss, err
}

// Close ends the child: closing stdin makes it exit; Wait reaps it.
func (p *Proc) Close() {
	_ = p.in.Close()
	_ = p.cmd.Wait()
}
