package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newDataCmd() *cobra.Command {
	var s3 s3Flags
	c := &cobra.Command{
		Use:   "data",
		Short: "Ingest, list and verify datasets of Arrow shards in S3 or a local directory",
		Long: `Datasets are Arrow IPC files (shards) plus an index.json under a prefix in
S3-compatible storage (s3://bucket/prefix) or in a local directory. The
index is written last, so a dataset whose ingest did not finish is never
visible. docs/data-format.md describes the schemas.

S3 settings come from --s3-* flags or the environment (LOOM_S3_ENDPOINT,
LOOM_S3_ACCESS_KEY, LOOM_S3_SECRET_KEY, LOOM_S3_REGION, or the AWS_*
equivalents). A host:port endpoint means HTTPS unless --s3-insecure is set;
a URL says its scheme.`,
		Example: `  export LOOM_S3_ENDPOINT=http://127.0.0.1:7070 LOOM_S3_ACCESS_KEY=... LOOM_S3_SECRET_KEY=...
  loom data ingest ./coco s3://datasets/coco
  loom data ls s3://datasets/coco
  loom data verify s3://datasets/coco`,
	}
	s3.register(c.PersistentFlags(), "S3 endpoint of the dataset")
	c.AddCommand(newDataIngestCmd(&s3), newDataLsCmd(&s3), newDataVerifyCmd(&s3), newDataSynthCmd(&s3))
	return c
}

func newDataIngestCmd(s3 *s3Flags) *cobra.Command {
	var format, imageRoot, onError, shardSize, batchSize string
	c := &cobra.Command{
		Use:   "ingest SRC DEST",
		Short: "Convert images+captions, LLaVA JSON, WebDataset tars or text into a dataset",
		Long: `ingest reads SRC (a file or a directory) and writes a dataset to DEST.

Input formats (--format, detected from file names when auto):
  images  a JSONL of {"image": "a.jpg", "caption": "..."}, image paths relative
          to the JSONL (or --image-root); JPEG and PNG           -> image-text
  llava   LLaVA conversation JSON: [{"id", "image", "conversations":
          [{"from": "human"|"gpt", "value"}]}]; loss on gpt turns -> conversation
  wds     WebDataset .tar shards: KEY.jpg|png with KEY.txt or KEY.json
          ({"caption": ...})                                      -> image-text
  text    .txt files, one document per non-empty line           -> text
  jsonl   JSONL of {"text": ...} -> text, or {"tokens": [...]} -> tokens

Bad records (unreadable or missing image, malformed line) are reported with
file and line. --on-error=fail (default) stops at the first one and writes no
index; --on-error=skip skips them, logs each and reports how many.`,
		Example: `  loom data ingest ./coco/captions.jsonl s3://datasets/coco
  loom data ingest --format llava --image-root ./images llava.json s3://datasets/llava
  loom data ingest --on-error skip ./wds/ /data/laion --shard-size 512MiB`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			skip := false
			switch onError {
			case "fail":
			case "skip":
				skip = true
			default:
				return fmt.Errorf("--on-error %q: want fail or skip", onError)
			}
			sb, bb, err := parseShardSizes(shardSize, batchSize)
			if err != nil {
				return err
			}
			store, prefix, err := s3.open(ctx, args[1], true)
			if err != nil {
				return err
			}
			prog := newProgressReporter(cmd.ErrOrStderr(), "ingest")
			start := time.Now()
			st, err := shard.Ingest(ctx, args[0], store, prefix, shard.IngestOptions{
				Format: format, ImageRoot: imageRoot, SkipBad: skip,
				Writer: shard.WriterOptions{ShardBytes: sb, BatchBytes: bb,
					OnShard: func(s shard.ShardInfo) {
						slog.Debug("shard stored", "key", s.Key, "rows", s.Rows, "bytes", s.Size)
					}},
				Progress: prog.update,
			})
			prog.finish()
			if st != nil {
				for _, e := range st.SkipErrors {
					slog.Warn("skipped bad input", "error", e.Error())
				}
			}
			if err != nil {
				return err
			}
			if len(st.MetaFields) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "kept fields %s of the input in each row's meta (JSON object)\n", strings.Join(st.MetaFields, ", "))
			}
			el := time.Since(start).Seconds()
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d %s rows in %d shards (%s) to %s in %.1fs (%s/s of input, %.0f rows/s); skipped %d bad records\n",
				st.Rows, st.Kind, len(st.Index.Shards), shard.HumanBytes(st.Index.Bytes), args[1], el,
				shard.HumanBytes(int64(float64(st.InputBytes)/el)), float64(st.Rows)/el, st.Skipped)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&format, "format", "auto", "input format: auto, images, llava, wds, text or jsonl")
	f.StringVar(&imageRoot, "image-root", "", "directory image paths are relative to (default: the JSON/JSONL file's directory)")
	f.StringVar(&onError, "on-error", "fail", "what to do with a bad record: fail or skip (skips are counted and logged)")
	f.StringVar(&shardSize, "shard-size", "256MiB", "target shard size")
	f.StringVar(&batchSize, "batch-size", "4MiB", "target record batch size (one range GET when reading)")
	return c
}

func newDataLsCmd(s3 *s3Flags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "ls DATASET",
		Short: "Show a dataset's kind, size and shards from its index",
		Example: `  loom data ls s3://datasets/coco
  loom data ls --json /data/laion`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, prefix, err := s3.open(cmd.Context(), args[0], false)
			if err != nil {
				return err
			}
			ix, err := shard.ReadIndex(cmd.Context(), store, prefix)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, err := ix.Marshal()
				if err != nil {
					return err
				}
				_, err = out.Write(b)
				return err
			}
			batches := 0
			for _, s := range ix.Shards {
				batches += len(s.Batches)
			}
			fmt.Fprintf(out, "%s: %s (schema v%d), %d rows, %d shards, %d record batches, %s\n",
				args[0], ix.Kind, ix.SchemaVersion, ix.Rows, len(ix.Shards), batches, shard.HumanBytes(ix.Bytes))
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SHARD\tROWS\tBATCHES\tSIZE\tSHA256")
			for _, s := range ix.Shards {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", s.Key, s.Rows, len(s.Batches), shard.HumanBytes(s.Size), s.SHA256[:16])
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the index as JSON")
	return c
}

func newDataVerifyCmd(s3 *s3Flags) *cobra.Command {
	var asJSON, decode bool
	c := &cobra.Command{
		Use:   "verify DATASET",
		Short: "Read a whole dataset and check checksums, schema, row counts and images",
		Long: `verify reads every shard of a dataset and checks what its index promises:
object sizes and sha256, each record batch's sha256 and row count, the Arrow
footer and schema, every sample's fields, and that every image decodes
(headers only, or fully with --decode-images). Every fault is printed with
the object, batch or row at fault. The exit status is 1 if anything is wrong.`,
		Example: `  loom data verify s3://datasets/coco
  loom data verify --decode-images --json /data/laion`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, prefix, err := s3.open(cmd.Context(), args[0], false)
			if err != nil {
				return err
			}
			rep, err := shard.Verify(cmd.Context(), store, prefix, shard.VerifyOptions{
				DecodeImages: decode,
				OnShard: func(s int, faults []string) {
					slog.Debug("shard verified", "shard", s, "faults", len(faults))
				},
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(map[string]any{"ok": rep.OK(), "shards": rep.Shards, "batches": rep.Batches,
					"rows": rep.Rows, "bytes": rep.Bytes, "faults": rep.Faults, "unindexed": rep.Unindexed}); err != nil {
					return err
				}
			} else {
				for _, f := range rep.Faults {
					fmt.Fprintln(out, "FAULT", f)
				}
				for _, k := range rep.Unindexed {
					fmt.Fprintln(out, "note: object not in the index:", k)
				}
				fmt.Fprintf(out, "%s: %d shards, %d batches, %d rows, %s checked; %d faults\n",
					args[0], rep.Shards, rep.Batches, rep.Rows, shard.HumanBytes(rep.Bytes), len(rep.Faults))
			}
			if !rep.OK() {
				return &exitError{code: 1, err: fmt.Errorf("dataset %s: %d faults", args[0], len(rep.Faults))}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	c.Flags().BoolVar(&decode, "decode-images", false, "fully decode every image, not only its header")
	return c
}

func newDataSynthCmd(s3 *s3Flags) *cobra.Command {
	var kind, shardSize, batchSize string
	var n int
	var seed uint64
	c := &cobra.Command{
		Use:   "synth DEST",
		Short: "Write a synthetic dataset (coloured shapes with captions, documents, frames, text, tokens)",
		Long: `synth writes a deterministic synthetic dataset: PNG images of coloured shapes
with captions that describe them ("a red circle on a blue background"),
interleaved documents, short frame sequences with captions, conversations
about images, text documents or token sequences. The same seed always gives
the same dataset.`,
		Example: `  loom data synth --kind image-text -n 10000 /tmp/shapes
  loom data synth --kind video-text -n 500 --seed 7 s3://datasets/toy-video`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := shard.ParseKind(kind)
			if err != nil {
				return fmt.Errorf("--kind: %w", err)
			}
			sb, bb, err := parseShardSizes(shardSize, batchSize)
			if err != nil {
				return err
			}
			store, prefix, err := s3.open(cmd.Context(), args[0], true)
			if err != nil {
				return err
			}
			ix, err := synth.Write(cmd.Context(), store, prefix, k, n, seed, shard.WriterOptions{ShardBytes: sb, BatchBytes: bb})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d %s rows in %d shards (%s) to %s\n", ix.Rows, ix.Kind, len(ix.Shards), shard.HumanBytes(ix.Bytes), args[0])
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&kind, "kind", "image-text", "sample kind: image-text, interleaved, video-text, text, conversation or tokens")
	f.IntVarP(&n, "rows", "n", 1000, "number of samples")
	f.Uint64Var(&seed, "seed", 1, "generator seed")
	f.StringVar(&shardSize, "shard-size", "256MiB", "target shard size")
	f.StringVar(&batchSize, "batch-size", "4MiB", "target record batch size")
	return c
}

// progressReporter draws a bar on a terminal (redrawn at most 10 times a
// second) and otherwise logs a line every 5 seconds.
type progressReporter struct {
	mu    sync.Mutex
	w     io.Writer
	what  string
	tty   bool
	p     *shard.Progress
	last  time.Time
	drawn bool
}

func newProgressReporter(w io.Writer, what string) *progressReporter {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progressReporter{w: w, what: what, tty: tty}
}

func (r *progressReporter) update(done, total, rows int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.p == nil {
		r.p = shard.NewProgress(total, now)
	}
	r.p.Update(done, rows, now)
	every := 5 * time.Second
	if r.tty {
		every = 100 * time.Millisecond
	}
	if r.last.IsZero() {
		r.last = now // first report after one period, when the rate means something
		return
	}
	if now.Sub(r.last) < every {
		return
	}
	r.last = now
	if r.tty {
		width := 100
		if f, ok := r.w.(*os.File); ok {
			if w, _, err := term.GetSize(int(f.Fd())); err == nil {
				width = w
			}
		}
		fmt.Fprintf(r.w, "\r\033[K%s", r.p.Bar(width))
		r.drawn = true
		return
	}
	bps, rps := r.p.Rate()
	attrs := []any{"done_bytes", done, "total_bytes", total, "rows", rows, "bytes_per_s", int64(bps), "rows_per_s", int64(rps)}
	if eta := r.p.ETA(); eta >= 0 {
		attrs = append(attrs, "eta", eta.String())
	}
	slog.Info(r.what+" progress", attrs...)
}

func (r *progressReporter) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.drawn {
		fmt.Fprintln(r.w)
	}
}

func init() { rootCmd.AddCommand(newDataCmd()) }

// parseShardSizes parses the --shard-size and --batch-size flags that
// ingest, synth and the reader benchmark share.
func parseShardSizes(shardSize, batchSize string) (shardBytes, batchBytes int64, err error) {
	if shardBytes, err = shard.ParseBytes(shardSize); err != nil {
		return 0, 0, fmt.Errorf("--shard-size: %w", err)
	}
	if batchBytes, err = shard.ParseBytes(batchSize); err != nil {
		return 0, 0, fmt.Errorf("--batch-size: %w", err)
	}
	return shardBytes, batchBytes, nil
}
