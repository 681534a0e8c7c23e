package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/devcluster"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/hf"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/loomtrain/loom/shard"
)

// loom export against a running cluster: a VILA job's committed
// checkpoint written as a Hugging Face LLM directory and as one Loom file;
// both reopen with the checkpoint's weights.
func TestExportCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a worker process")
	}
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Bin: loomBinary, Coordinators: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uri, err := c.WriteData(ctx, "vila", 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartWorker("w0"); err != nil {
		t.Fatal(err)
	}
	m, err := devManifest(devFlags{recipe: "vila", size: "tiny", workers: 1, steps: 2, batch: 4, lr: 1e-3}, uri)
	if err != nil {
		t.Fatal(err)
	}
	m.Stages = m.Stages[:1]
	if _, err := c.Submit(ctx, m); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, c, m.Name, 120*time.Second, func(j *loompb.Job) bool { return j.State == "succeeded" })
	out := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(loomBinary, append([]string{"export", "--coordinator", c.APIs()[0], "--s3-endpoint", c.S3().Addr(), "--s3-insecure"}, args...)...)
		cmd.Env = append(os.Environ(), "LOOM_S3_ACCESS_KEY="+c.S3().AccessKey, "LOOM_S3_SECRET_KEY="+c.S3().SecretKey)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("loom export %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	s := run(m.Name, "--part", "llm", "--shard-bytes", "20000", filepath.Join(out, "llm"))
	if !strings.Contains(s, "as LlamaForCausalLM") {
		t.Errorf("export output: %s", s)
	}
	s = run(m.Name+"@2", "--format", "loom", filepath.Join(out, "vila.safetensors"))
	if !strings.Contains(s, "step 2 (stage align)") {
		t.Errorf("export output: %s", s)
	}
	whole, err := models.Open(filepath.Join(out, "vila.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	model := 0
	for name := range finalTensors(t, c, j) {
		if strings.HasPrefix(name, "model/") {
			model++
		}
	}
	if model != len(whole.Params().Names()) {
		t.Errorf("the Loom file has %d tensors, the checkpoint's model %d", len(whole.Params().Names()), model)
	}
	ck, err := hf.Open(ctx, hf.Dir(filepath.Join(out, "llm")))
	if err != nil {
		t.Fatal(err)
	}
	if len(ck.Files()) < 2 {
		t.Errorf("--shard-bytes 20000 wrote %v", ck.Files())
	}
	// The job trained with the byte-level tokenizer; the export carries it
	// as a tokenizer.json that encodes to the same ids.
	tok, err := tokenizer.OpenDir(filepath.Join(out, "llm"))
	if err != nil {
		t.Fatal(err)
	}
	bytesOnly, err := tokenizer.NewBPE(nil, tokenizer.DefaultSpecial)
	if err != nil {
		t.Fatal(err)
	}
	var hc struct {
		Vocab int `json:"vocab_size"`
	}
	if err := json.Unmarshal(ck.Config(), &hc); err != nil {
		t.Fatal(err)
	}
	if text := "<image> a red circle"; !slices.Equal(tok.Encode(text), bytesOnly.Encode(text)) || tok.VocabSize() != hc.Vocab {
		t.Errorf("exported tokenizer: %d tokens (config.json says %d), encodes %q to %v, want %v",
			tok.VocabSize(), hc.Vocab, text, tok.Encode(text), bytesOnly.Encode(text))
	}
	l, err := hf.FindLayout("llm", models.VILA, ck.Config())
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := models.New(whole.Config(), 5)
	if err != nil {
		t.Fatal(err)
	}
	mp, err := l.Mapping(fresh.Config())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hf.Load(ctx, ck, mp, fresh.Params()); err != nil {
		t.Fatal(err)
	}
	for _, n := range whole.Params().Names() {
		if nn.Match(n, "llm.*") && !slices.Equal(whole.Params().Get(n).Data, fresh.Params().Get(n).Data) {
			t.Errorf("%s differs between the Loom file and the HF export", n)
		}
	}
	// loom logs: the worker's log of the job, uploaded next to its
	// checkpoints (issue 15 part 4). The job has ended, so --follow
	// prints what there is and returns.
	logs := exec.Command(loomBinary, "logs", "--coordinator", c.APIs()[0], "--s3-endpoint", c.S3().Addr(), "--s3-insecure", "--rank", "0", "--follow", m.Name)
	logs.Env = append(os.Environ(), "LOOM_S3_ACCESS_KEY="+c.S3().AccessKey, "LOOM_S3_SECRET_KEY="+c.S3().SecretKey)
	if b, err := logs.CombinedOutput(); err != nil || !strings.Contains(string(b), "gen 1 rank 0") ||
		!strings.Contains(string(b), "INFO  starting generation") || !strings.Contains(string(b), "generation ended") {
		t.Errorf("loom logs %s --rank 0 --follow: %v\n%s", m.Name, err, b)
	}
	// loom eval on the same checkpoint: retrieval with R@1/5/10 and the
	// caption loss, which --task caption computes alike.
	evalJSON := func(args ...string) evalReport {
		t.Helper()
		cmd := exec.Command(loomBinary, append([]string{"eval", "--coordinator", c.APIs()[0], "--s3-endpoint", c.S3().Addr(), "--s3-insecure", "--json"}, args...)...)
		cmd.Env = append(os.Environ(), "LOOM_S3_ACCESS_KEY="+c.S3().AccessKey, "LOOM_S3_SECRET_KEY="+c.S3().SecretKey)
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("loom eval %v: %v\n%s", args, err, b)
		}
		var r evalReport
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("loom eval %v: %v\n%s", args, err, b)
		}
		return r
	}
	pairs := uri(shard.KindImageText)
	ret := evalJSON(m.Name, "--data", pairs, "--samples", "12")
	if ret.Samples != 12 || ret.Step != 2 || ret.Stage != "align" || ret.Chance != 1.0/12 || ret.CaptionLoss <= 0 ||
		ret.TextToImage["r10"] < ret.TextToImage["r5"] || ret.TextToImage["r5"] < ret.TextToImage["r1"] || ret.ImageToText["r10"] < ret.ImageToText["r1"] {
		t.Errorf("loom eval retrieval: %+v", ret)
	}
	capt := evalJSON(m.Name+"@2", "--data", pairs, "--samples", "12", "--task", "caption")
	if math.Abs(capt.CaptionLoss-ret.CaptionLoss) > 1e-6 || math.Abs(capt.Perplexity-math.Exp(capt.CaptionLoss)) > 1e-9 {
		t.Errorf("loom eval --task caption: loss %v, perplexity %v; retrieval's caption loss %v", capt.CaptionLoss, capt.Perplexity, ret.CaptionLoss)
	}
	// The synthetic pairs carry no labels: zero-shot says which row lacks one.
	cmd0 := exec.Command(loomBinary, "eval", "--coordinator", c.APIs()[0], "--s3-endpoint", c.S3().Addr(), "--s3-insecure", m.Name, "--data", pairs, "--samples", "4", "--task", "zeroshot", "--classes", "circle,square")
	cmd0.Env = append(os.Environ(), "LOOM_S3_ACCESS_KEY="+c.S3().AccessKey, "LOOM_S3_SECRET_KEY="+c.S3().SecretKey)
	if b, err := cmd0.CombinedOutput(); err == nil || !strings.Contains(string(b), `sample image-text-00000000: no meta, so no "label" field`) {
		t.Errorf("loom eval --task zeroshot on unlabelled pairs: %v\n%s", err, b)
	}

	// A VILA job has no embeddings: loom embed says so.
	cmd1 := exec.Command(loomBinary, "embed", "--coordinator", c.APIs()[0], "--s3-endpoint", c.S3().Addr(), "--s3-insecure", m.Name, "--data", pairs, "--samples", "4", filepath.Join(out, "e.arrow"))
	cmd1.Env = append(os.Environ(), "LOOM_S3_ACCESS_KEY="+c.S3().AccessKey, "LOOM_S3_SECRET_KEY="+c.S3().SecretKey)
	if b, err := cmd1.CombinedOutput(); err == nil || !strings.Contains(string(b), "has no embeddings") {
		t.Errorf("loom embed of a vila job: %v\n%s", err, b)
	}

	// A step that was not committed is refused, naming the retained ones.
	cmd := exec.Command(loomBinary, "export", "--coordinator", c.APIs()[0], m.Name+"@7", filepath.Join(out, "x"))
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "no committed checkpoint at step 7 (retained:") {
		t.Errorf("export @7: %v\n%s", err, b)
	}
}
