package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"text/tabwriter"
	"time"

	"github.com/loomtrain/loom/internal/s3server"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
	"github.com/spf13/cobra"
)

func newBenchReaderCmd() *cobra.Command {
	var (
		server, size, shardSize, batchSize, dir string
		aheadSize, coalesceSize                 string
		minSide, maxSide, noise, fetchers, rep  int
		asJSON                                  bool
		cpuProfile                              string
	)
	c := &cobra.Command{
		Use:   "reader",
		Short: "Dataset read throughput through shard.Reader vs raw GETs of the same objects, and ingest throughput",
		Long: `reader starts an S3 server on loopback (versitygw as a separate process by
default, or the embedded gofakes3 server), writes a synthetic image-text
dataset of about --size bytes through the shard Writer (ingest throughput,
against raw PUTs of the same shard bytes), then reads one epoch through the
shard Reader in the sampler's shuffled order, against raw whole-object GETs
of the same shards with the same concurrency. The Reader prefetches the
batches ahead of the consumer up to a byte bound (3/4 of its 256 MiB cache),
coalesces adjacent batches into range GETs of up to 64 MiB (all of a
shard's batches: one GET of the whole object), checks every batch's CRC32C
and decodes it as its bytes stream in, and checks every image header. Runs
alternate; the best of --repeat is kept, and the ratio of the medians is
printed too. Target: reader >= 0.8x raw GET. The client's CPU seconds per
pass are printed as well (steadier than wall time on a loaded machine; the
server's are not counted).

versitygw must be installed: ` + s3server.VersityInstall,
		Example: `  loom bench reader
  loom bench reader --size 512MiB --fetchers 8 --json
  loom bench reader --ahead 64MiB --coalesce 16MiB --repeat 9
  loom bench reader --server embedded`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			target, err := shard.ParseBytes(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			sb, bb, err := parseShardSizes(shardSize, batchSize)
			if err != nil {
				return err
			}
			var ahead, coalesce int64
			if aheadSize != "" {
				if ahead, err = shard.ParseBytes(aheadSize); err != nil {
					return fmt.Errorf("--ahead: %w", err)
				}
			}
			if coalesceSize != "" {
				if coalesce, err = shard.ParseBytes(coalesceSize); err != nil {
					return fmt.Errorf("--coalesce: %w", err)
				}
			}
			if noise < 0 || noise > 255 {
				return fmt.Errorf("--noise %d: want 0..255", noise)
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "loom-bench-reader-*")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				dir = d
			}
			var s3cfg shard.S3Config
			switch server {
			case "versitygw":
				v, err := s3server.StartVersity(dir)
				if err != nil {
					return err
				}
				defer v.Close()
				if err := v.CreateBucket("bench"); err != nil {
					return err
				}
				s3cfg = shard.S3Config{Endpoint: v.Endpoint, AccessKey: v.AccessKey, SecretKey: v.SecretKey}
			case "embedded":
				s, err := s3server.Start(dir)
				if err != nil {
					return err
				}
				defer s.Close()
				if err := s.CreateBucket("bench"); err != nil {
					return err
				}
				s3cfg = shard.S3Config{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: s.SecretKey}
			default:
				return fmt.Errorf("--server %q: want versitygw or embedded", server)
			}
			s3cfg.Bucket = "bench"
			store, err := shard.NewS3Store(s3cfg)
			if err != nil {
				return err
			}

			genStart := time.Now()
			opts := synth.Options{MinSide: minSide, MaxSide: maxSide, Noise: uint8(noise)}
			var samples []shard.Sample
			var got int64
			for i := 0; got < target; i++ {
				s := synth.SampleWith(shard.KindImageText, 1, i, opts)
				got += int64(len(s.Image.Data) + len(s.Caption) + len(s.ID))
				samples = append(samples, s)
			}
			gen := time.Since(genStart).Seconds()

			ing, err := shard.BenchIngest(ctx, store, "ds", shard.KindImageText, samples, shard.WriterOptions{ShardBytes: sb, BatchBytes: bb})
			if err != nil {
				return fmt.Errorf("ingest: %w", err)
			}
			ing.GenerateSeconds = gen
			samples = nil
			if cpuProfile != "" {
				// Profile the read passes only, not generation and ingest.
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
			}
			rd, err := shard.BenchRead(ctx, store, "ds", shard.ReadBenchOptions{Fetchers: fetchers, Repeat: rep, Seed: 1,
				Reader: shard.ReaderOptions{AheadBytes: ahead, CoalesceBytes: coalesce}})
			if cpuProfile != "" {
				pprof.StopCPUProfile()
			}
			if err != nil {
				return fmt.Errorf("read: %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{
					"server": server, "date": time.Now().UTC().Format("2006-01-02"), "cpus": runtime.NumCPU(),
					"dataset_bytes": rd.Bytes, "rows": rd.Rows, "fetchers": rd.Fetchers, "window": rd.Window,
					"read": rd, "ingest": ing,
				})
			}
			mib := func(x float64) string { return fmt.Sprintf("%.1f MiB/s", x/(1<<20)) }
			fmt.Fprintf(out, "dataset: %d image-text rows, %s in %d-byte shards (server %s, %d fetchers, shuffle window %d rows)\n",
				rd.Rows, shard.HumanBytes(rd.Bytes), sb, server, rd.Fetchers, rd.Window)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CASE\tLOOM\tBASELINE\tRATIO\tTARGET")
			fmt.Fprintf(tw, "read one epoch (Reader vs raw GET)\t%s\t%s\t%.2f\t>= 0.80\n", mib(rd.ReaderBytesPer), mib(rd.RawBytesPerSec), rd.Ratio)
			fmt.Fprintf(tw, "ingest (Writer vs raw PUT)\t%s\t%s\t%.2f\t-\n", mib(ing.WriterBytesPer), mib(ing.RawPutBytesPer), ing.Ratio)
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(out, "ingest: %d rows in %.2fs (%.0f rows/s); sample generation (not timed above) %.2fs\n",
				ing.Rows, ing.WriterSeconds, float64(ing.Rows)/ing.WriterSeconds, ing.GenerateSeconds)
			fmt.Fprintf(out, "passes (s): raw %v, reader %v; ratio of the medians %.2f\n", fmtSecs(rd.RawSeconds), fmtSecs(rd.ReaderSeconds), rd.MedianRatio)
			if len(rd.RawCPUSeconds) > 0 {
				fmt.Fprintf(out, "client CPU per pass (s): raw %v, reader %v; reader GETs per pass %d\n", fmtSecs(rd.RawCPUSeconds), fmtSecs(rd.ReaderCPUSeconds), rd.ReaderGets)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&server, "server", "versitygw", "S3 server: versitygw (separate process) or embedded (gofakes3 in-process)")
	f.StringVar(&size, "size", "128MiB", "dataset size to generate")
	f.StringVar(&shardSize, "shard-size", "32MiB", "target shard size")
	f.StringVar(&batchSize, "batch-size", "4MiB", "target record batch size")
	f.IntVar(&minSide, "min-side", 128, "smallest generated image side (px)")
	f.IntVar(&maxSide, "max-side", 192, "largest generated image side (px)")
	f.IntVar(&noise, "noise", 24, "per-pixel noise (makes PNGs photo-sized)")
	f.IntVar(&fetchers, "fetchers", 4, "concurrent GETs, for both the reader and the raw baseline")
	f.IntVar(&rep, "repeat", 3, "alternating runs of each; the best is kept")
	f.StringVar(&dir, "dir", "", "server data directory (default: a temporary directory, removed after)")
	f.StringVar(&aheadSize, "ahead", "", "Reader read-ahead bound in bytes, e.g. 64MiB (default: 3/4 of its 256 MiB cache)")
	f.StringVar(&coalesceSize, "coalesce", "", "largest coalesced range GET of the Reader, e.g. 16MiB (default 64 MiB)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the read passes (raw and Reader, alternating) to this file")
	return c
}

func fmtSecs(xs []float64) string {
	s := "["
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%.2f", x)
	}
	return s + "]"
}

func init() { benchCmd.AddCommand(newBenchReaderCmd()) }
