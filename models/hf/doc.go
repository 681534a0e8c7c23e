// Package hf reads and writes model directories in the Hugging Face layout:
// config.json, model.safetensors or the shards that
// model.safetensors.index.json lists, and the tokenizer files beside them.
//
// A Source is a local directory (Dir) or an object-store prefix (the
// trainer adapts its S3 store); reads are byte ranges, so Open fetches only
// headers and Load streams one tensor at a time into the model (F32, F16,
// BF16 and F64 are converted to float32 on the way): memory stays at the
// model plus its largest tensor.
//
// Each architecture is one file with one Mapping: a table from the
// checkpoint's tensor names to Loom's parameter tree, with the conventions
// that the table alone cannot say (fused projections split, tied heads,
// padded vocabularies, zero biases) spelled out as Entry fields, and a
// function that reads its config.json into Loom's config. MakePlan checks a
// mapping against a checkpoint without reading data (what `--dry-run`
// prints); Load applies it; Export is its inverse.
//
//	ck, err := hf.Open(ctx, hf.Dir("/models/tinyllama"))
//	cfg, err := hf.LlamaConfig(ck.Config())
//	m, err := llm.New(p, rng, "llm.", cfg)
//	plan, err := hf.Load(ctx, ck, hf.LlamaMapping(cfg, "", "llm."), p)
//
// Errors name the source, the file and the tensor that is missing,
// unexpected or of the wrong shape. The reference checks (Loom's outputs
// against PyTorch forwards that follow transformers' modeling code, on tiny
// checkpoints generated in testdata/) are described in docs/pretrained.md.
package hf
