package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/hf"
	"github.com/loomtrain/loom/models/safetensors"
	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
	"github.com/loomtrain/loom/worker"
)

func init() { rootCmd.AddCommand(newExportCmd()) }

func newExportCmd() *cobra.Command {
	var (
		cf     clientFlags
		s3     s3Flags
		format string
		part   string
		dtype  string
		shardB int64
	)
	c := &cobra.Command{
		Use:   "export JOB[@STEP] DEST",
		Short: "Write a job's committed checkpoint as a Hugging Face directory or a single Loom file",
		Long: `Reads a committed checkpoint of JOB (the last one, or the one at STEP) through the
coordinator's record of it, checks every object against its sha256, rebuilds the
model from the config the checkpoint records, and writes it to DEST, a directory
or an s3://bucket/prefix.

--format hf writes a Hugging Face directory: safetensors shards (with
model.safetensors.index.json when there are several) and config.json, written
last. --part chooses what: the LLM alone as LlamaForCausalLM (or OPTForCausalLM),
the vision tower alone as CLIPVisionModel, SiglipVisionModel or Blip2VisionModel,
or the whole model where Loom has its layout (docs/pretrained.md lists them).

--format loom writes one safetensors file with the model's config in its metadata,
which models.Open (and Loom jobs) reopen by themselves; DEST is the file.

Checkpoint objects are read from S3 with the --s3-* settings.

Example:
  loom export vila-tiny --part llm --format hf ./vicuna-from-loom
  loom export blip2-small@600 --format loom ./blip2-600.safetensors
  loom export vila-tiny --part vision --dtype bf16 s3://models/vila-vit`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, step, err := parseJobStep(args[0])
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			switch format {
			case "hf", "loom":
			default:
				return &exitError{code: 2, err: fmt.Errorf("--format %q: want hf or loom", format)}
			}
			octx := cmd.Context()
			jc, err := openJobCheckpoint(octx, &cf, &s3, job, step)
			if err != nil {
				return err
			}
			model, man, err := trainer.OpenCheckpoint(octx, jc.store, jc.ref, jc.m)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "loom" {
				var buf bytes.Buffer
				if err := models.SaveTo(&buf, model, map[string]string{"job": job, "step": strconv.FormatInt(man.Step, 10), "stage": man.StageName}); err != nil {
					return err
				}
				if err := putFile(octx, &s3, args[1], buf.Bytes()); err != nil {
					return err
				}
				fmt.Fprintf(out, "wrote %s: %s model of job %s, step %d (stage %s), %d parameters, %d bytes\n",
					args[1], model.Config().Family, job, man.Step, man.StageName, model.Params().Count(), buf.Len())
				return nil
			}
			sink, err := sinkFor(octx, &s3, args[1])
			if err != nil {
				return err
			}
			dt := safetensors.DType(strings.ToUpper(dtype))
			opt := hf.ExportOptions{DType: dt, ShardBytes: shardB}
			if man.Tokenizer != "" && part != "vision" {
				// The tokenizer files the job trained with, unchanged.
				files, err := tokenizerFiles(octx, &s3, man.Tokenizer)
				if err != nil {
					return fmt.Errorf("the job's tokenizer %s: %w", man.Tokenizer, err)
				}
				opt.Files = files
			} else if part != "vision" {
				// The job trained with Loom's byte-level tokenizer: write it
				// as a tokenizer.json with the same ids.
				files, err := byteLevelTokenizerFiles(model.Config().LLM.Vocab)
				if err != nil {
					return err
				}
				opt.Files = files
			}
			res, layout, err := trainer.ExportHF(octx, model, part, sink, opt)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "wrote %s: %s of job %s step %d (stage %s) as %s, %d tensors in %d file(s), %d bytes of %s\n",
				sink, part, job, man.Step, man.StageName, layout, res.Tensors, len(res.Shards), res.Bytes, dt)
			return nil
		},
	}
	cf.register(c)
	s3.register(c.Flags(), "S3 endpoint of the checkpoints (and of DEST when it is s3://)")
	c.Flags().StringVar(&format, "format", "hf", "hf (a Hugging Face directory) or loom (one safetensors file with the config)")
	c.Flags().StringVar(&part, "part", "model", "with --format hf: model, llm or vision")
	c.Flags().StringVar(&dtype, "dtype", "f32", "with --format hf: f32, bf16 or f16")
	c.Flags().Int64Var(&shardB, "shard-bytes", 5_000_000_000, "with --format hf: the largest safetensors shard")
	return c
}

// parseJobStep splits JOB[@STEP].
func parseJobStep(s string) (string, int64, error) {
	job, st, ok := strings.Cut(s, "@")
	if !ok {
		return job, 0, nil
	}
	step, err := strconv.ParseInt(st, 10, 64)
	if err != nil || step <= 0 {
		return "", 0, fmt.Errorf("%q: want JOB or JOB@STEP with a positive step", s)
	}
	return job, step, nil
}

// pickCheckpoint is the job's checkpoint at step (0: the last committed).
func pickCheckpoint(j *loompb.Job, step int64) (*loompb.Checkpoint, error) {
	if len(j.Checkpoints) == 0 {
		return nil, fmt.Errorf("job %s has no committed checkpoint", j.Name)
	}
	if step == 0 {
		return j.Checkpoints[len(j.Checkpoints)-1], nil
	}
	var have []string
	for _, c := range j.Checkpoints {
		if c.Step == step {
			return c, nil
		}
		have = append(have, strconv.FormatInt(c.Step, 10))
	}
	return nil, fmt.Errorf("job %s has no committed checkpoint at step %d (retained: %s)", j.Name, step, strings.Join(have, " "))
}

// jobCheckpoint is a committed checkpoint of a job as the client commands
// (export, eval, embed) read it: the checkpoint, the job's manifest as the
// coordinator holds it, and the bucket of its objects with the reference
// in its keys.
type jobCheckpoint struct {
	cp    *loompb.Checkpoint
	m     *api.Manifest
	store shard.ObjectStore
	ref   trainer.CheckpointRef
}

// openJobCheckpoint asks the coordinator for job's committed checkpoint at
// step (0: the last) and opens the bucket its objects are in. A step that
// is not committed is a usage error (exit status 2) naming the retained
// ones.
func openJobCheckpoint(ctx context.Context, cf *clientFlags, s3 *s3Flags, job string, step int64) (*jobCheckpoint, error) {
	cc, err := cf.dial()
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	rctx, cancel := cf.ctx(ctx)
	j, err := jobsClient(cc).GetJob(rctx, &loompb.GetJobRequest{Job: job})
	cancel()
	if err != nil {
		return nil, rpcError(cf.addr, err)
	}
	cp, err := pickCheckpoint(j, step)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	m, err := api.ParseManifest(job+" (coordinator)", j.ManifestYaml)
	if err != nil {
		return nil, err
	}
	store, ref, err := checkpointStore(ctx, s3, cp)
	if err != nil {
		return nil, err
	}
	return &jobCheckpoint{cp: cp, m: m, store: store, ref: ref}, nil
}

// run rebuilds the checkpoint's model in the stage it was written in, as
// a one-worker trainer.Run that reads datasets through the --s3-* flags
// (eval, embed).
func (jc *jobCheckpoint) run(ctx context.Context, s3 *s3Flags) (*trainer.Run, error) {
	open := func(ctx context.Context, d api.Dataset) (shard.ObjectStore, string, error) {
		return s3.open(ctx, d.URI, false)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	return trainer.NewRun(ctx, trainer.Job{Manifest: jc.m, Stage: jc.ref.Stage, World: 1, Store: jc.store, OpenDataset: open, Logger: quiet}, &jc.ref)
}

// checkpointStore opens the bucket a committed checkpoint's s3://BUCKET/KEY
// objects are in and returns the reference in its keys.
func checkpointStore(ctx context.Context, s3 *s3Flags, cp *loompb.Checkpoint) (shard.ObjectStore, trainer.CheckpointRef, error) {
	bucket := ""
	if len(cp.Objects) > 0 {
		rest, _ := strings.CutPrefix(cp.Objects[0].Path, "s3://")
		bucket, _, _ = strings.Cut(rest, "/")
	}
	r, err := worker.CheckpointRef(cp, bucket)
	if err != nil {
		return nil, trainer.CheckpointRef{}, err
	}
	ref := *r
	store, _, err := s3.open(ctx, "s3://"+bucket, false)
	if err != nil {
		return nil, ref, fmt.Errorf("checkpoint bucket %s: %w", bucket, err)
	}
	return store, ref, nil
}

// sinkFor is a directory or an s3://bucket/prefix to write files into.
func sinkFor(ctx context.Context, s3 *s3Flags, dest string) (hf.Sink, error) {
	if !strings.HasPrefix(dest, "s3://") {
		return hf.Dir(strings.TrimPrefix(dest, "file://")), nil
	}
	store, prefix, err := s3.open(ctx, dest, true)
	if err != nil {
		return nil, err
	}
	return trainer.StoreSource{Store: store, Prefix: prefix, Name: dest}, nil
}

// putFile writes one file to a local path or an s3://bucket/key.
func putFile(ctx context.Context, s3 *s3Flags, dest string, data []byte) error {
	if !strings.HasPrefix(dest, "s3://") {
		dest = strings.TrimPrefix(dest, "file://")
		return hf.Dir(filepath.Dir(dest)).Put(ctx, filepath.Base(dest), data)
	}
	loc, err := shard.ParseLocation(dest)
	if err != nil {
		return err
	}
	store, _, err := s3.open(ctx, "s3://"+loc.Bucket, true)
	if err != nil {
		return err
	}
	return store.Put(ctx, loc.Prefix, bytes.NewReader(data), int64(len(data)))
}

// byteLevelTokenizerFiles are the Hugging Face files of Loom's byte-level
// tokenizer (tokenizer.HFFiles), for a model whose vocabulary is vocab.
func byteLevelTokenizerFiles(vocab int) (map[string][]byte, error) {
	tok, err := tokenizer.NewBPE(nil, tokenizer.DefaultSpecial)
	if err != nil {
		return nil, err
	}
	if tok.VocabSize() != vocab {
		return nil, fmt.Errorf("the checkpoint names no tokenizer, but its vocabulary (%d) is not Loom's byte-level tokenizer's (%d)", vocab, tok.VocabSize())
	}
	fs, err := tokenizer.HFFiles(tok)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, f := range fs {
		out[f.Name] = f.Data
	}
	return out, nil
}

// tokenizerFiles reads the tokenizer files of a directory or s3:// prefix.
func tokenizerFiles(ctx context.Context, s3 *s3Flags, where string) (map[string][]byte, error) {
	store, prefix, err := s3.open(ctx, where, false)
	if err != nil {
		return nil, err
	}
	t, err := tokenizer.OpenFiles(where, func(name string) ([]byte, error) {
		key := shard.JoinKey(prefix, name)
		info, err := store.Stat(ctx, key)
		if errors.Is(err, shard.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return store.GetRange(ctx, key, 0, info.Size)
	})
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, f := range t.Files() {
		out[f.Name] = f.Data
	}
	return out, nil
}
