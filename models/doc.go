// Package models builds the four vision-language model families of Loom's
// recipes from kernels ops: BLIP-2 (and InstructBLIP), Qwen-VL, LLaVA-1.5 /
// VILA and LWM (with its VQGAN image tokenizer). Every architectural choice
// cites its paper or reference file in the family's source
// (../shared/research/recipes.md has the sources).
//
// # Building a model
//
//	cfg, err := models.Preset(models.LLaVA, "small") // "tiny", "small" or "paper"
//	cfg = cfg.WithVocab(tok.VocabSize(), special)     // special from models.SpecialFrom(tok)
//	n := models.ParamCount(cfg)                        // from the config alone, nothing allocated
//	m, err := models.New(cfg, seed)                    // parameters drawn from seed
//
// BLIP-2 presets are stage 1; set cfg.Stage = 2 for the stage-2 model.
// New applies each family's architectural freezing (BLIP-2: the ViT, and
// the LLM in stage 2 / InstructBLIP; LLaVA/VILA: the ViT); a recipe stage
// changes it with m.Params().Freeze / Unfreeze.
//
// # Training step (what the trainer does)
//
//	tp := kernels.NewTape()
//	m.Params().ZeroGrad()
//	out, err := m.Forward(tp, &models.Batch{Images: imgs, Tokens: ids, Loss: mask})
//	tp.Backward(out.Loss)                  // out.Terms: itc, itm, itg, lm, ce_text, ce_vision, recon, vq
//	opt.Step()                             // opt = kernels.NewAdamW(m.Params().Trainable(), …)
//
// Batch fields by family:
//
//   - BLIP-2 stage 1: Images (one per row), Tokens = Q-Former caption ids
//     starting with Special.BOS ([CLS]); Seed drives ITM negative sampling.
//     Loss = ITC + ITM + ITG.
//   - BLIP-2 stage 2: Images, Tokens = LLM caption ids (Loss optional);
//     the queries enter the LLM as soft prompts with no loss. InstructBLIP
//     adds Instruction (Q-Former ids) and Loss (false on the prompt).
//   - Qwen-VL: Images, Tokens with <img></img> pairs; the adapter's queries
//     go between each pair.
//   - LLaVA / VILA: Images, Tokens with <image> placeholders (several per
//     row for interleaved documents, in image order).
//   - LWM: Tokens and Vision flags (LWMVision lays out frames with
//     <vision>, <eof>, <eov>, </vision>); loss 0.5·CE_vision + 0.5·CE_text.
//   - VQGAN: Images in [-1, 1]; loss = reconstruction + codebook +
//     β·commitment. Tokenizer(m) returns the VQGAN to encode images.
//
// Loss marks the tokens whose prediction is trained (nil: all but the
// first); Segments packs several documents into a row (block-diagonal
// causal attention, positions restarting at 0).
//
// # Loss weights
//
// The loss Forward returns is Σ wᵢ·termᵢ over the terms Config.LossTerms
// names, weighted by Config.LossWeights (default: the papers' weights,
// BLIP-2 ITC:ITM:ITG 1:1:1, LWM 0.5·CE_vision + 0.5·CE_text); a weight of
// 0 leaves a term out. Output.Parts holds the unweighted terms as tape
// tensors.
//
// # BLIP-2 across data-parallel workers
//
// Batch.Group makes BLIP-2 stage 1's ITC and ITM span rows held by other
// workers: the caller passes the group's tokens, a seed shared by the
// group and a Gather function (an all-gather whose backward is an
// all-reduce-sum, e.g. built with kernels.Tape.Custom from collective
// calls); the image query features, the text [CLS] features and the ViT
// outputs of negative images go through it, and each worker's loss is its
// per-sample share of the group's.
//
// With gradient accumulation the group's batches do not run at once, so
// the group is contrasted ahead of time (GradCache, Gao et al. 2021): the
// model's ContrastFeatures(batch) computes each batch's features without a
// graph, Contrast(features of every row) computes ITC over the group with
// its gradient with respect to every feature (a models.Contrast), and each
// batch's Forward with Group.Contrast set recomputes its features with the
// graph (checked bit for bit against the first pass), back-propagates its
// rows of the cached gradient, and draws its ITM negatives from the cached
// similarities and negative images from the cached ViT outputs.
//
// # Parameters and checkpoints
//
// m.Params() is the named tree (PyTorch names, e.g.
// "qformer.layer.0.crossattention.query.weight"). Save writes safetensors
// (PyTorch-readable; metadata family, size and the Config as JSON, which
// ReadConfig returns to rebuild the model); Load reads it and by default
// requires an exact match, failing on a missing, extra or wrongly shaped
// tensor with its name. Partial loading is explicit:
//
//	models.Load(path, m, nn.LoadOptions{Only: []string{"mm_projector.*"}})
//	models.Load(stage1, stage2Model, nn.LoadOptions{
//		Only: []string{"vit.*", "ln_vision.*", "qformer.*"},
//		Skip: qformer.TextSidePatterns("qformer"),
//	})
//
// # Subpackages
//
// nn (parameter tree, layers, masks, positions), vit, llm, qformer, vqgan
// (the building blocks), tokenizer (byte-level BPE) and safetensors.
package models
