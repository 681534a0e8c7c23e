// Package trainer turns one stage of a manifest into optimizer steps: it
// builds the stage's model (models/), reads this rank's slice of every
// global batch (shard/), runs forward and backward with gradient
// accumulation over micro-batches, all-reduces the gradients in buckets
// (collective/), clips them by their global norm and applies AdamW with a
// learning-rate schedule; it writes checkpoints (sharded safetensors plus a
// JSON manifest with checksums) to an object store, asynchronously, and
// makes them visible only through a Committer; it evaluates (retrieval
// accuracy, caption loss and exact match).
//
// # Usage (what the worker does for one assignment)
//
//	run, err := trainer.NewRun(ctx, trainer.Job{
//		Manifest: m, Stage: a.Stage, Rank: a.Rank, World: a.World,
//		Generation: a.Generation, Comm: comm, Store: ckptStore,
//		CheckpointPrefix: "ckpt/" + m.Name, Committer: coordinatorCommitter,
//	}, restore) // restore: the last committed checkpoint, or nil
//	defer run.Close()
//	for !run.Done() {
//		p, err := run.Step(ctx) // one optimizer step; p: loss per term, tokens/s, ...
//		if run.State().Step%interval == 0 {
//			results, err := run.Checkpoint(ctx) // returns once the state is copied
//			go func() { r := <-results; report(r) }()
//		}
//	}
//	res, err := run.Checkpoint(ctx) // the stage's final checkpoint
//
// # Recipes
//
// A Recipe (blip2.go, qwenvl.go, vila.go, lwm.go; one file per family, every
// stage citing ../shared/research/recipes.md) says, per stage: the model and
// its size mapping, which modules train (Trainable patterns; the rest is
// frozen), which modules are dropped, the sample kinds the stage reads and
// how they become token rows (captions, interleaved documents, assistant-only
// conversations, VQ-tokenised images and videos with masked packing), the
// resolution, context length and RoPE θ, the losses with their weights, the
// optimizer hyperparameters, and which stage initialises it. The manifest's
// defaults and per-stage overrides (api.Hyperparameters) are applied on top
// of the recipe's values.
//
// # Determinism and data parallelism
//
// Global batch k is the samples at positions [k·B, (k+1)·B) of the stage's
// mixture stream (shard.MixedSampler), whatever the world size; rank r takes
// shard.RankSlice(B, r, W) of it and cuts it into micro-batches. Each
// micro-batch's loss is scaled by its share of the global normaliser
// (trained tokens, or samples for losses that are per-sample means), so the
// sum of the ranks' gradients is the gradient of the global batch's loss:
// N ranks with global batch B produce the weights one rank produces with B,
// up to float32 summation order. Every random choice (ITM negatives,
// dropout masks, augmentation) is a pure function of (seed, step, sample
// position): every micro-batch of a step gets the step's seed and its
// first row's index in the global batch (models.Batch.RowOffset).
//
// BLIP-2 stage 1 contrasts (ITC) and matches (ITM, hard negatives) every
// image and text of the global batch across the ranks, at any world size
// and micro_batch (group.go): with one micro-batch per rank the ranks'
// rows form a models.Group whose features travel through an all-gather
// with gradient; with gradient accumulation the step first computes every
// micro-batch's features without a graph, all-gathers them and computes
// ITC and its gradient over the whole global batch (GradCache, Gao et al.
// 2021), then runs each micro-batch with the graph and back-propagates its
// rows of that gradient.
//
// # Overlap of communication and backward
//
// The last micro-batch's backward runs with kernels.Tape.BackwardWithHook:
// each parameter's gradient is copied into the all-reduce buffer as soon as
// it is final, and each bucket is handed to collective.Bucketer as soon as
// all of its parameters are (overlap.go), so the gradient all-reduce runs
// while backward computes the earlier layers. Step's Progress.CommWait
// counts only the wait that backward did not hide.
//
// # Loss weights
//
// A stage's loss is Σ wᵢ·termᵢ over its terms (Stage.Losses: the recipe's
// weights, reweighted by the manifest's losses), passed to the model as
// models.Config.LossWeights.
//
// A checkpoint stores the weights, the AdamW moments and step count, the
// samples consumed and the seed; a run restored from it continues exactly
// as the uninterrupted run would, at any world size that divides the global
// batch.
package trainer
