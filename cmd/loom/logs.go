package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/worker"
)

func init() { rootCmd.AddCommand(newLogsCmd()) }

func newLogsCmd() *cobra.Command {
	var (
		cf     clientFlags
		s3     s3Flags
		bucket string
		rank   int
		gen    int64
		follow bool
		raw    bool
		poll   time.Duration
	)
	c := &cobra.Command{
		Use:   "logs JOB",
		Short: "Print a job's worker logs (every rank, or one); --follow keeps printing",
		Long: `Prints the log of every generation of JOB, rank by rank, as the workers
uploaded it next to the job's checkpoints (PREFIX/logs/gen-G/rank-R/*.jsonl:
records at info level and up, in segments every few seconds and when a
generation ends). --rank and --generation pick one; --follow keeps printing new
segments until the job has ended and its last segments are read.

The checkpoint location comes from the job's manifest (checkpoint.uri), or
else from its committed checkpoints, or else --s3-bucket (the workers'
--s3-bucket, under checkpoints/JOB).

Example:
  loom logs blip2-small
  loom logs blip2-small --rank 0 --follow`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc, err := cf.dial()
			if err != nil {
				return err
			}
			defer cc.Close()
			ctx := cmd.Context()
			get := func() (*loompb.Job, error) {
				gctx, cancel := cf.ctx(ctx)
				defer cancel()
				j, err := jobsClient(cc).GetJob(gctx, &loompb.GetJobRequest{Job: args[0]})
				if err != nil {
					return nil, rpcError(cf.addr, err)
				}
				return j, nil
			}
			j, err := get()
			if err != nil {
				return err
			}
			b, prefix, err := logLocation(j, bucket)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			store, _, err := s3.open(ctx, "s3://"+b, false)
			if err != nil {
				return fmt.Errorf("checkpoint bucket %s: %w", b, err)
			}
			out := cmd.OutOrStdout()
			seen := map[string]bool{}
			for {
				// Whether the job had ended before this listing: then
				// the listing holds its last segments.
				ended := j.State == "succeeded" || j.State == "failed" || j.State == "cancelled"
				keys, err := logSegments(ctx, store, prefix, rank, gen)
				if err != nil {
					return fmt.Errorf("listing s3://%s/%s/logs: %w", b, prefix, err)
				}
				for _, k := range keys {
					if seen[k.key] {
						continue
					}
					seen[k.key] = true
					data, err := store.GetRange(ctx, k.key, 0, k.size)
					if err != nil {
						return fmt.Errorf("s3://%s/%s: %w", b, k.key, err)
					}
					printLogSegment(out, k, data, raw)
				}
				if !follow || ended {
					if len(seen) == 0 && !follow {
						fmt.Fprintf(cmd.ErrOrStderr(), "no logs of job %s under s3://%s/%s/logs/ (yet)\n", j.Name, b, prefix)
					}
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(poll):
				}
				if j, err = get(); err != nil {
					return err
				}
			}
		},
	}
	cf.register(c)
	s3.register(c.Flags(), "S3 endpoint of the checkpoints")
	c.Flags().StringVar(&bucket, "s3-bucket", os.Getenv("LOOM_S3_BUCKET"), "checkpoint bucket of jobs whose manifest names none, when the job has no committed checkpoint yet (env LOOM_S3_BUCKET)")
	c.Flags().IntVar(&rank, "rank", -1, "only this rank (default: all)")
	c.Flags().Int64Var(&gen, "generation", 0, "only this generation (default: all)")
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new log segments until the job ends")
	c.Flags().BoolVar(&raw, "json", false, "print the JSON records as stored")
	c.Flags().DurationVar(&poll, "interval", 2*time.Second, "how often --follow looks for new segments")
	return c
}

// logLocation is the bucket and key prefix of the job's checkpoints, under
// which the workers upload its logs.
func logLocation(j *loompb.Job, bucket string) (string, string, error) {
	m, err := api.ParseManifest(j.Name+" (coordinator)", j.ManifestYaml)
	if err != nil {
		return "", "", err
	}
	if m.Checkpoint.URI != "" {
		loc, err := shard.ParseLocation(m.Checkpoint.URI)
		if err != nil || !loc.S3 {
			return "", "", fmt.Errorf("job %s: checkpoint.uri %q is not an s3:// location", j.Name, m.Checkpoint.URI)
		}
		return loc.Bucket, loc.Prefix, nil
	}
	for _, cp := range j.Checkpoints {
		for _, o := range cp.Objects {
			if rest, ok := strings.CutPrefix(o.Path, "s3://"); ok {
				b, _, _ := strings.Cut(rest, "/")
				return b, shard.JoinKey("checkpoints", j.Name), nil
			}
		}
	}
	if bucket == "" {
		return "", "", fmt.Errorf("job %s has no committed checkpoint to find its bucket from: give --s3-bucket (the workers' --s3-bucket) or LOOM_S3_BUCKET", j.Name)
	}
	return bucket, shard.JoinKey("checkpoints", j.Name), nil
}

// logSegment is one uploaded piece of one rank's log.
type logSegment struct {
	key             string
	size            int64
	gen, rank, part int64
}

// logSegments lists the job's log segments in (generation, rank, part)
// order, filtered by rank and generation (-1 and 0: all).
func logSegments(ctx context.Context, store shard.ObjectStore, prefix string, rank int, gen int64) ([]logSegment, error) {
	var out []logSegment
	base := shard.JoinKey(prefix, "logs") + "/"
	err := store.List(ctx, base, func(o shard.ObjectInfo) error {
		var s logSegment
		if _, err := fmt.Sscanf(strings.TrimPrefix(o.Key, prefix+"/"), worker.LogKeyFormat, &s.gen, &s.rank, &s.part); err != nil {
			return nil // not a segment
		}
		if (rank >= 0 && s.rank != int64(rank)) || (gen > 0 && s.gen != gen) {
			return nil
		}
		s.key, s.size = o.Key, o.Size
		out = append(out, s)
		return nil
	})
	sort.Slice(out, func(a, b int) bool {
		x, y := out[a], out[b]
		if x.gen != y.gen {
			return x.gen < y.gen
		}
		if x.rank != y.rank {
			return x.rank < y.rank
		}
		return x.part < y.part
	})
	return out, err
}

// printLogSegment prints a segment's records as
// "gen G rank R  TIME LEVEL msg key=value ..." (or as stored with raw).
func printLogSegment(w io.Writer, s logSegment, data []byte, raw bool) {
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		if raw {
			fmt.Fprintln(w, line)
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			fmt.Fprintf(w, "gen %d rank %d  %s\n", s.gen, s.rank, line)
			continue
		}
		ts, _ := rec["time"].(string)
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			ts = t.Format("15:04:05.000")
		}
		lvl, _ := rec["level"].(string)
		msg, _ := rec["msg"].(string)
		var keys []string
		for k := range rec {
			switch k {
			case "time", "level", "msg", "job", "generation", "rank":
			default:
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var b strings.Builder
		fmt.Fprintf(&b, "gen %d rank %d  %s %-5s %s", s.gen, s.rank, ts, lvl, msg)
		for _, k := range keys {
			v, _ := json.Marshal(rec[k])
			fmt.Fprintf(&b, " %s=%s", k, strings.Trim(string(v), `"`))
		}
		fmt.Fprintln(w, b.String())
	}
}
