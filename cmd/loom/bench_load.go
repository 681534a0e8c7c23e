package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"text/tabwriter"

	"github.com/loomtrain/loom/internal/s3server"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer/hfbench"
	"github.com/spf13/cobra"
)

// passEnv carries a child pass's spec (credentials included, so not argv).
const passEnv = "LOOM_HFBENCH_PASS"

func newBenchLoadCmd() *cobra.Command {
	var (
		server, size, shardSize, dir, bucket, exe string
		rep                                       int
		passes                                    []string
		asJSON, inProcess, pass, testModel        bool
		s3f                                       s3Flags
	)
	c := &cobra.Command{
		Use:   "load",
		Short: "Hugging Face checkpoint load (hf.Open + hf.Load) from S3 vs raw GETs of the same shards, export vs raw PUTs, and peak memory",
		Long: `load generates a LLaMA-shaped BF16 checkpoint of about --size bytes
(TinyLlama-1.1B widths, as many layers as fit; shards of at most
--shard-size, an index and config.json) in an S3 server (the embedded
gofakes3 server by default, versitygw with --server versitygw, or any
server with --s3-endpoint), then runs --repeat interleaved rounds of:

  raw-get    whole-object GETs of the shard objects, 4 at a time (as many
             as hf.Load keeps in flight): the baseline of the loads
  load       hf.Open + hf.Load through trainer.StoreSource (whose
             ReadRangeInto lets Load reuse its read buffers) into a float32
             parameter tree of the same names and shapes
  load-into  the same through the benchmark's own RangeReaderInto
             wrapper over shard.S3Store.StreamRange (the path StoreSource
             now takes itself)
  raw-put    PUTs of the same shard bytes, one at a time (as hf.Export
             writes them): the baseline of the export
  export     hf.Export of the model (float32, filled untimed) as BF16 shards

Each pass runs in a fresh loom process (unless --in-process), so its peak
RSS (VmHWM) and sampled Go heap high-water are its own and the S3 server's
memory is not counted. Targets: load >= 0.8x raw GET (ratio of the median
MB/s); peak RSS of a load <= model (float32) + largest shard.`,
		Example: `  loom bench load
  loom bench load --size 4GB --shard-size 1GB --repeat 5 --json
  loom bench load --server versitygw`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if pass {
				return runLoadPass(ctx, cmd)
			}
			total, err := shard.ParseBytes(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			sb, err := shard.ParseBytes(shardSize)
			if err != nil {
				return fmt.Errorf("--shard-size: %w", err)
			}
			cfg, err := s3f.config()
			if err != nil {
				return err
			}
			if cfg.Endpoint == "" {
				if dir == "" {
					d, err := os.MkdirTemp("", "loom-bench-load-*")
					if err != nil {
						return err
					}
					defer os.RemoveAll(d)
					dir = d
				}
				switch server {
				case "embedded":
					s, err := s3server.Start(dir)
					if err != nil {
						return err
					}
					defer s.Close()
					if err := s.CreateBucket(bucket); err != nil {
						return err
					}
					cfg = shard.S3Config{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: s.SecretKey}
				case "versitygw":
					v, err := s3server.StartVersity(dir)
					if err != nil {
						return err
					}
					defer v.Close()
					if err := v.CreateBucket(bucket); err != nil {
						return err
					}
					cfg = shard.S3Config{Endpoint: v.Endpoint, AccessKey: v.AccessKey, SecretKey: v.SecretKey}
				default:
					return fmt.Errorf("--server %q: want embedded or versitygw", server)
				}
			} else {
				server = "external"
			}
			cfg.Bucket = bucket
			if server == "external" {
				st, err := shard.NewS3Store(cfg)
				if err != nil {
					return err
				}
				if err := st.EnsureBucket(ctx); err != nil {
					return err
				}
			}
			o := hfbench.Options{Bytes: total, ShardBytes: sb, Repeat: rep, S3: cfg, Passes: passes, Log: cmd.ErrOrStderr()}
			if testModel {
				o.Model = hfbench.Model{Layers: 3, Hidden: 64, Intermediate: 172, KVHidden: 16, Vocab: 100}
			}
			if !inProcess {
				if exe == "" {
					if exe, err = os.Executable(); err != nil {
						return err
					}
				}
				o.Spawn = func(ctx context.Context, sp hfbench.PassSpec) (*hfbench.PassResult, error) {
					return spawnLoadPass(ctx, exe, sp)
				}
			}
			res, err := hfbench.Run(ctx, o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"server": server, "cpus": runtime.NumCPU(), "result": res})
			}
			fmt.Fprintf(out, "checkpoint: %d params (%d layers), %s BF16 in %d shards (largest %s); model in float32 %s; server %s; %d rounds\n",
				res.Params, res.Model.Layers, shard.HumanBytes(res.CheckpointBytes), res.Shards, shard.HumanBytes(res.LargestShard),
				shard.HumanBytes(res.ModelBytes), server, rep)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CASE\tMB/s min/med/max\tBASELINE MB/s min/med/max\tRATIO (medians)\tRATIO per round min/med/max\tTARGET")
			for _, c := range res.Compare {
				tgt := "-"
				if c.Target > 0 {
					tgt = fmt.Sprintf(">= %.2f (%s)", c.Target, metWord(c.Met))
				}
				fmt.Fprintf(tw, "%s vs %s\t%.0f/%.0f/%.0f\t%.0f/%.0f/%.0f\t%.2f\t%.2f/%.2f/%.2f\t%s\n", c.Case, c.Baseline,
					c.MBps.Min, c.MBps.Median, c.MBps.Max, c.BaseMBps.Min, c.BaseMBps.Median, c.BaseMBps.Max,
					c.Ratio, c.Ratios.Min, c.Ratios.Median, c.Ratios.Max, tgt)
			}
			fmt.Fprintln(tw, "\nPASS\tPEAK RSS\tPEAK GO HEAP\tBOUND (model + largest shard)\tRSS <= BOUND")
			for _, m := range res.Memory {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Case, shard.HumanBytes(m.RSSPeak), shard.HumanBytes(m.HeapPeak), shard.HumanBytes(m.Bound), metWord(m.Met))
			}
			return tw.Flush()
		},
	}
	f := c.Flags()
	f.StringVar(&server, "server", "embedded", "S3 server when --s3-endpoint is not set: embedded (gofakes3 in this process) or versitygw (separate process)")
	s3f.register(f, "an S3 server to use instead of starting one")
	f.StringVar(&bucket, "bucket", "bench", "bucket (created if missing)")
	f.StringVar(&size, "size", "2GB", "checkpoint size in BF16")
	f.StringVar(&shardSize, "shard-size", "500MB", "largest shard")
	f.IntVar(&rep, "repeat", 3, "interleaved rounds of every pass")
	f.StringSliceVar(&passes, "passes", nil, "passes to run each round (default raw-get,load,load-into,raw-put,export)")
	f.StringVar(&dir, "dir", "", "server data directory (default: a temporary directory, removed after)")
	f.BoolVar(&inProcess, "in-process", false, "run the passes in this process (peak RSS then includes the server and earlier passes)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.BoolVar(&pass, "pass", false, "run one pass from $"+passEnv+" and print its result (used by the passes' processes)")
	f.StringVar(&exe, "exe", "", "loom binary for the passes' processes (default this one)")
	f.BoolVar(&testModel, "test-model", false, "a tiny model instead of --size (for tests)")
	for _, h := range []string{"pass", "exe", "test-model"} {
		_ = f.MarkHidden(h)
	}
	return c
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// runLoadPass is the child side: one pass, its result as JSON on stdout.
func runLoadPass(ctx context.Context, cmd *cobra.Command) error {
	var sp hfbench.PassSpec
	if err := json.Unmarshal([]byte(os.Getenv(passEnv)), &sp); err != nil {
		return fmt.Errorf("--pass: $%s: %w", passEnv, err)
	}
	res, err := hfbench.RunPass(ctx, sp)
	if err != nil {
		return err
	}
	res.Child = true
	return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
}

// spawnLoadPass runs one pass in a fresh process of exe.
func spawnLoadPass(ctx context.Context, exe string, sp hfbench.PassSpec) (*hfbench.PassResult, error) {
	b, err := json.Marshal(sp)
	if err != nil {
		return nil, err
	}
	c := exec.CommandContext(ctx, exe, "bench", "load", "--pass")
	c.Env = append(os.Environ(), passEnv+"="+string(b))
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("pass %s: %w\n%s", sp.Kind, err, stderr.String())
	}
	var res hfbench.PassResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("pass %s: %w: %q", sp.Kind, err, stdout.String())
	}
	return &res, nil
}

func init() { benchCmd.AddCommand(newBenchLoadCmd()) }
