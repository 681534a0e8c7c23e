package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

func init() { rootCmd.AddCommand(newEvalCmd()) }

// evalReport is what loom eval --json prints.
type evalReport struct {
	Job     string `json:"job"`
	Step    int64  `json:"step"`
	Stage   string `json:"stage"`
	Data    string `json:"data"`
	Samples int    `json:"samples"`
	Task    string `json:"task"`
	// retrieval
	TextToImage map[string]float64 `json:"text_to_image,omitempty"` // "r1", "r5", "r10"
	ImageToText map[string]float64 `json:"image_to_text,omitempty"`
	Chance      float64            `json:"chance,omitempty"`
	// retrieval and caption
	CaptionLoss float64 `json:"caption_loss,omitempty"`
	Perplexity  float64 `json:"perplexity,omitempty"`
	// zero-shot
	Accuracy      float64 `json:"accuracy,omitempty"`
	Classes       int     `json:"classes,omitempty"`
	ChanceClasses float64 `json:"chance_classes,omitempty"`
}

func newEvalCmd() *cobra.Command {
	var (
		cf         clientFlags
		s3         s3Flags
		data       string
		task       string
		n          int
		classes    []string
		prompt     string
		labelField string
		asJSON     bool
	)
	c := &cobra.Command{
		Use:   "eval JOB[@STEP] --data URI [--task retrieval|caption|zeroshot]",
		Short: "Evaluate a committed checkpoint of a job on an image-text dataset",
		Long: `Rebuilds the model of a committed checkpoint of JOB (the last one, or the one at
STEP) in the stage it was written in, reads the first --samples image-text pairs
of the dataset at --data (s3://bucket/prefix or file:///path, as loom data ingest
writes it), and scores them with the trainer's evaluation (the same code as
loom dev's summary):

  retrieval  every image against every caption by the model's caption loss
             given the image: text→image and image→text recall@1, @5 and @10
             (image→text relative to each caption's mean loss over the
             images), with the caption loss and perplexity of the true pairs.
             N pairs take N² forward passes.
  caption    the caption loss and perplexity of the true pairs (N passes).
  zeroshot   each image against the prompt of every class (--classes,
             --prompt "a photo of a {}"), the class whose prompt it makes
             most likely relative to that prompt's mean over the images;
             accuracy against the label in each row's meta (--label-field).

Checkpoints and data are read from S3 with the --s3-* settings.

Example:
  loom eval blip2-small --data s3://loom/datasets/image-text --samples 32
  loom eval vila-tiny@300 --data s3://data/coco-val --task caption --samples 500 --json
  loom eval blip2-small --data s3://data/shapes --task zeroshot --classes circle,square,triangle --prompt "a {} on a background"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, step, err := parseJobStep(args[0])
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			switch {
			case data == "":
				return &exitError{code: 2, err: fmt.Errorf("--data: name the dataset to evaluate on")}
			case task != "retrieval" && task != "caption" && task != "zeroshot":
				return &exitError{code: 2, err: fmt.Errorf("--task %q: want retrieval, caption or zeroshot", task)}
			case n < 2:
				return &exitError{code: 2, err: fmt.Errorf("--samples %d: want at least 2", n)}
			case task == "zeroshot" && len(classes) < 2:
				return &exitError{code: 2, err: fmt.Errorf("--classes: name at least two classes for --task zeroshot")}
			}
			octx := cmd.Context()
			jc, err := openJobCheckpoint(octx, &cf, &s3, job, step)
			if err != nil {
				return err
			}
			cp, m := jc.cp, jc.m
			samples, err := readPairs(octx, &s3, data, n)
			if err != nil {
				return fmt.Errorf("--data %s: %w", data, err)
			}
			run, err := jc.run(octx, &s3)
			if err != nil {
				return err
			}
			defer run.Close()
			st, err := trainer.Resolve(m, jc.ref.Stage)
			if err != nil {
				return err
			}
			rep := evalReport{Job: job, Step: cp.Step, Stage: st.Name, Data: data, Samples: len(samples), Task: task}
			switch task {
			case "retrieval":
				r, err := run.Evaluate(octx, samples)
				if err != nil {
					return err
				}
				rep.TextToImage = map[string]float64{"r1": r.Retrieval, "r5": r.TextToImageAt5, "r10": r.TextToImageAt10}
				rep.ImageToText = map[string]float64{"r1": r.ImageToText, "r5": r.ImageToTextAt5, "r10": r.ImageToTextAt10}
				rep.Chance, rep.CaptionLoss, rep.Perplexity = r.Chance, r.CaptionLoss, math.Exp(r.CaptionLoss)
			case "caption":
				loss, err := run.CaptionLoss(octx, samples)
				if err != nil {
					return err
				}
				rep.CaptionLoss, rep.Perplexity = loss, math.Exp(loss)
			case "zeroshot":
				label := func(s shard.Sample) (string, error) { return metaLabel(s, labelField) }
				acc, _, err := run.ZeroShot(octx, samples, classes, prompt, label)
				if err != nil {
					return err
				}
				rep.Accuracy, rep.Classes, rep.ChanceClasses = acc, len(classes), 1/float64(len(classes))
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			fmt.Fprintf(out, "job %s step %d (stage %s) on %d pairs of %s\n", job, cp.Step, st.Name, len(samples), data)
			switch task {
			case "retrieval":
				fmt.Fprintf(out, "  text→image  R@1 %.3f  R@5 %.3f  R@10 %.3f\n", rep.TextToImage["r1"], rep.TextToImage["r5"], rep.TextToImage["r10"])
				fmt.Fprintf(out, "  image→text  R@1 %.3f  R@5 %.3f  R@10 %.3f\n", rep.ImageToText["r1"], rep.ImageToText["r5"], rep.ImageToText["r10"])
				fmt.Fprintf(out, "  chance R@1 %.3f; caption loss %.4f, perplexity %.3f\n", rep.Chance, rep.CaptionLoss, rep.Perplexity)
			case "caption":
				fmt.Fprintf(out, "  caption loss %.4f, perplexity %.3f\n", rep.CaptionLoss, rep.Perplexity)
			case "zeroshot":
				fmt.Fprintf(out, "  zero-shot accuracy %.3f over %d classes (chance %.3f), prompt %q\n", rep.Accuracy, rep.Classes, rep.ChanceClasses, prompt)
			}
			return nil
		},
	}
	cf.register(c)
	s3.register(c.Flags(), "S3 endpoint of the checkpoints and of --data")
	c.Flags().StringVar(&data, "data", "", "the image-text dataset: s3://bucket/prefix or file:///path")
	c.Flags().StringVar(&task, "task", "retrieval", "retrieval, caption or zeroshot")
	c.Flags().IntVar(&n, "samples", 32, "image-text pairs to evaluate, the dataset's first (retrieval takes N² forward passes)")
	c.Flags().StringSliceVar(&classes, "classes", nil, "with --task zeroshot: the class names")
	c.Flags().StringVar(&prompt, "prompt", "a photo of a {}", "with --task zeroshot: the class prompt; {} is the class name")
	c.Flags().StringVar(&labelField, "label-field", "label", "with --task zeroshot: the field of each row's meta that holds its class")
	c.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
	return c
}

// readPairs reads the first n rows of the image-text dataset at uri.
func readPairs(ctx context.Context, s3 *s3Flags, uri string, n int) ([]shard.Sample, error) {
	store, prefix, err := s3.open(ctx, uri, false)
	if err != nil {
		return nil, err
	}
	return trainer.ReadPairs(ctx, store, prefix, n)
}

// metaLabel is the class of a sample: the field of its meta JSON object.
func metaLabel(s shard.Sample, field string) (string, error) {
	if strings.TrimSpace(s.Meta) == "" {
		return "", fmt.Errorf("no meta, so no %q field", field)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s.Meta), &m); err != nil {
		return "", fmt.Errorf("meta is not a JSON object: %w", err)
	}
	v, ok := m[field]
	if !ok {
		return "", fmt.Errorf("meta has no %q field", field)
	}
	if str, ok := v.(string); ok {
		return str, nil
	}
	return fmt.Sprint(v), nil
}
