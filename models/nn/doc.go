// Package nn holds the pieces every model family in models/ is built from:
// the named parameter tree (Params) with freeze/unfreeze/drop by glob
// pattern and safetensors save/load with explicit partial loading, the
// layers (Linear, LayerNorm, RMSNorm, MLP, multi-head attention via Attend,
// RoPE with explicit position ids), the attention-mask builders (Causal,
// Prefix, UniLM, Unimodal, Segment, Padding, Full, And) and fixed position
// tables (SinCos2D, BicubicMatrix).
//
// Everything is composed from kernels ops on a *kernels.Tape, so gradients
// come from the kernels' paired backward rules; nothing here writes a chain
// rule. Parameter names and layouts follow PyTorch (nn.Linear weight is
// [out, in]) so checkpoints load in PyTorch.
//
// Usage:
//
//	p := nn.NewParams()
//	rng := nn.Rng(seed)
//	proj := nn.NewLinear(p, rng, "projector.0", 1024, 4096, true)
//	p.Freeze("vit.*")
//	tp := kernels.NewTape()
//	y := proj.Forward(tp, x)
//	err := p.SaveFile("ckpt.safetensors", map[string]string{"step": "10"})
//	_, err = p.Load(file, nn.LoadOptions{Only: []string{"projector.*"}})
package nn
