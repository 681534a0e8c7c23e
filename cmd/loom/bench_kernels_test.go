package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/loomtrain/loom/kernels/kbench"
	"github.com/spf13/cobra"
)

func runKernelsBench(t *testing.T, c *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

func TestBenchAttentionCmd(t *testing.T) {
	out, err := runKernelsBench(t, newBenchAttentionCmd(), "--seq", "128", "--heads", "2", "--head-dim", "64", "--repeats", "1", "--mem-seqs", "64,128", "--json")
	if err != nil {
		t.Fatalf("loom bench attention --seq 128 --json: %v", err)
	}
	var r kbench.AttnResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("loom bench attention --json printed non-JSON %q: %v", out, err)
	}
	if r.Seq != 128 || r.Heads != 2 || !(r.GFLOPS > 0) || !(r.Ratio > 0) || len(r.Memory) != 2 {
		t.Errorf("loom bench attention --seq 128 --heads 2 --json got %+v", r)
	}
	out, err = runKernelsBench(t, newBenchAttentionCmd(), "--seq", "64", "--heads", "1", "--head-dim", "16", "--repeats", "1", "--causal", "--mem-seqs", "32,64")
	if err != nil {
		t.Fatalf("loom bench attention --causal: %v", err)
	}
	for _, want := range []string{"forward+backward", "ratio attention/sgemm", "growth exponent"} {
		if !strings.Contains(out, want) {
			t.Errorf("loom bench attention table lacks %q:\n%s", want, out)
		}
	}
	if _, err := runKernelsBench(t, newBenchAttentionCmd(), "--seq", "0"); err == nil || !strings.Contains(err.Error(), "must be positive") {
		t.Errorf("loom bench attention --seq 0: error %v, want one saying sizes must be positive", err)
	}
}

func TestBenchStepCmdNoTorch(t *testing.T) {
	out, err := runKernelsBench(t, newBenchStepCmd(), "--layers", "1", "--dim", "16", "--heads", "2", "--seq", "8", "--batch", "1", "--vocab", "20", "--steps", "1", "--no-torch", "--json")
	if err != nil {
		t.Fatalf("loom bench step --no-torch --json: %v", err)
	}
	var r kbench.StepResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("loom bench step --json printed non-JSON %q: %v", out, err)
	}
	if r.Config.Layers != 1 || !(r.LoomSeconds > 0) || r.TorchSeconds != 0 || r.Params == 0 {
		t.Errorf("loom bench step --no-torch got %+v", r)
	}
	_, err = runKernelsBench(t, newBenchStepCmd(), "--python", "/nonexistent/python3")
	if err == nil || !strings.Contains(err.Error(), "--no-torch") {
		t.Errorf("loom bench step --python /nonexistent: error %v, want one suggesting --no-torch", err)
	}
}
