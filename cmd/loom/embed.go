package main

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

func init() { rootCmd.AddCommand(newEmbedCmd()) }

func newEmbedCmd() *cobra.Command {
	var (
		cf    clientFlags
		s3    s3Flags
		data  string
		n     int
		batch int
	)
	c := &cobra.Command{
		Use:   "embed JOB[@STEP] --data URI DEST",
		Short: "Write the image and text embeddings of a dataset under a committed checkpoint, as an Arrow file",
		Long: `Rebuilds the model of a committed checkpoint of JOB (the last one, or the one at
STEP) and writes, for the first --samples image-text pairs of the dataset at
--data, the embeddings its contrastive loss compares, as one Arrow IPC file at
DEST (a path or s3://bucket/key): columns id (string), image_embedding
(fixed-size list of queries × dim float32: BLIP-2's per-query image
embeddings) and text_embedding (fixed-size list of dim float32), all
L2-normalised; the schema's metadata holds job, step, queries and dim. Their
similarity is the maximum over queries of the dot product (BLIP-2's ITC).

Only BLIP-2's representation stage has embeddings; the other stages and
recipes are trained by losses over generated text and are refused.

Example:
  loom embed blip2-small --data s3://loom/datasets/image-text --samples 1024 ./emb.arrow`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, step, err := parseJobStep(args[0])
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if data == "" {
				return &exitError{code: 2, err: fmt.Errorf("--data: name the dataset to embed")}
			}
			octx := cmd.Context()
			jc, err := openJobCheckpoint(octx, &cf, &s3, job, step)
			if err != nil {
				return err
			}
			cp := jc.cp
			samples, err := readPairs(octx, &s3, data, n)
			if err != nil {
				return fmt.Errorf("--data %s: %w", data, err)
			}
			run, err := jc.run(octx, &s3)
			if err != nil {
				return err
			}
			defer run.Close()
			emb, err := run.Embed(octx, samples, batch)
			if err != nil {
				return err
			}
			b, err := embeddingsArrow(samples, emb, map[string]string{"job": job, "step": strconv.FormatInt(cp.Step, 10)})
			if err != nil {
				return err
			}
			if err := putFile(octx, &s3, args[1], b); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d image and text embeddings (%d queries × %d, and %d) of job %s step %d, %d bytes\n",
				args[1], len(samples), emb.Queries, emb.Dim, emb.Dim, job, cp.Step, len(b))
			return nil
		},
	}
	cf.register(c)
	s3.register(c.Flags(), "S3 endpoint of the checkpoints, of --data and of DEST when it is s3://")
	c.Flags().StringVar(&data, "data", "", "the image-text dataset: s3://bucket/prefix or file:///path")
	c.Flags().IntVar(&n, "samples", 256, "image-text pairs to embed, the dataset's first")
	c.Flags().IntVar(&batch, "batch", 16, "pairs per forward pass")
	return c
}

// embeddingsArrow is the Arrow IPC file of the embeddings of samples.
func embeddingsArrow(samples []shard.Sample, e *trainer.Embeddings, meta map[string]string) ([]byte, error) {
	meta["queries"], meta["dim"] = strconv.Itoa(e.Queries), strconv.Itoa(e.Dim)
	keys := slices.Sorted(maps.Keys(meta))
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i] = meta[k]
	}
	md := arrow.NewMetadata(keys, vals)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.BinaryTypes.String},
		{Name: "image_embedding", Type: arrow.FixedSizeListOf(int32(e.Queries*e.Dim), arrow.PrimitiveTypes.Float32)},
		{Name: "text_embedding", Type: arrow.FixedSizeListOf(int32(e.Dim), arrow.PrimitiveTypes.Float32)},
	}, &md)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer rb.Release()
	ids := rb.Field(0).(*array.StringBuilder)
	img := rb.Field(1).(*array.FixedSizeListBuilder)
	txt := rb.Field(2).(*array.FixedSizeListBuilder)
	for i, s := range samples {
		ids.Append(s.ID)
		img.Append(true)
		img.ValueBuilder().(*array.Float32Builder).AppendValues(e.Image[i], nil)
		txt.Append(true)
		txt.ValueBuilder().(*array.Float32Builder).AppendValues(e.Text[i], nil)
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(schema))
	if err != nil {
		return nil, err
	}
	if err := w.Write(rec); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
