package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// runBenchSgemm runs a fresh `loom bench sgemm` (flags do not leak between calls).
func runBenchSgemm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c := newBenchSgemmCmd()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

func TestBenchSgemmJSON(t *testing.T) {
	out, err := runBenchSgemm(t, "--n", "40", "--threads", "1", "--rounds", "1", "--budget", "1ms", "--baseline=false", "--json")
	if err != nil {
		t.Fatalf("loom bench sgemm --n 40 --json: %v", err)
	}
	var r sgemmResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("loom bench sgemm --json printed non-JSON %q: %v", out, err)
	}
	if r.M != 40 || r.N != 40 || r.K != 40 || r.Threads != 1 || !(r.GFLOPS > 0) || r.Kernel == "" {
		t.Errorf("loom bench sgemm --n 40 --threads 1 --json got %+v, want a 40³ result on 1 thread with gflops > 0", r)
	}
	if r.BaselineGFLOPS != nil || r.Ratio != nil || !strings.Contains(r.Baseline, "not run") {
		t.Errorf("--baseline=false got baseline_gflops=%v ratio=%v baseline=%q, want null, null, \"not run ...\"", r.BaselineGFLOPS, r.Ratio, r.Baseline)
	}
}

func TestBenchSgemmTable(t *testing.T) {
	out, err := runBenchSgemm(t, "--m", "7", "--n", "9", "--k", "5", "--trans", "tn", "--threads", "2", "--rounds", "1", "--budget", "1ms", "--baseline=false")
	if err != nil {
		t.Fatalf("loom bench sgemm --m 7 --n 9 --k 5: %v", err)
	}
	for _, want := range []string{"loom GFLOP/s", "baseline GFLOP/s", "ratio", "7x9x5 TN", "unavailable"} {
		if !strings.Contains(out, want) {
			t.Errorf("loom bench sgemm table lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchSgemmFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--m", "4", "--n", "4"}, "--k is missing"},
		{[]string{"--shapes", "model", "--k", "4"}, "exclude each other"},
		{[]string{"--shapes", "huge"}, `--shapes "huge"`},
		{[]string{"--trans", "xt"}, `--trans "xt"`},
		{[]string{"--n", "0"}, "must be positive"},
		{[]string{"--threads", "-1"}, "--threads -1"},
		{[]string{"--rounds", "0"}, "--rounds 0"},
		{[]string{"--clock", "cpu", "--threads", "2"}, "--clock cpu needs --threads 1"},
		{[]string{"--clock", "tsc"}, `--clock "tsc"`},
	} {
		_, err := runBenchSgemm(t, append(tc.args, "--baseline=false")...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("loom bench sgemm %s: got error %v, want one containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// TestBenchSgemmBaseline runs the real OpenBLAS harness where numpy on OpenBLAS is
// installed, and checks that a missing interpreter is reported, not invented.
func TestBenchSgemmBaseline(t *testing.T) {
	out, err := runBenchSgemm(t, "--n", "32", "--rounds", "1", "--budget", "1ms", "--python", "/nonexistent/python3", "--json")
	if err != nil {
		t.Fatalf("loom bench sgemm --python /nonexistent/python3: %v", err)
	}
	var r sgemmResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.BaselineGFLOPS != nil || !strings.HasPrefix(r.Baseline, "unavailable: ") {
		t.Errorf("with no Python got baseline_gflops=%v baseline=%q, want null and \"unavailable: ...\"", r.BaselineGFLOPS, r.Baseline)
	}

	out, err = runBenchSgemm(t, "--n", "32", "--rounds", "2", "--budget", "1ms", "--clock", "cpu", "--json")
	if err != nil {
		t.Fatalf("loom bench sgemm --n 32: %v", err)
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.BaselineGFLOPS == nil {
		t.Skipf("OpenBLAS baseline not available here: %s", r.Baseline)
	}
	if !(*r.BaselineGFLOPS > 0) || r.Ratio == nil || !strings.Contains(r.Baseline, "OpenBLAS") || r.Clock != "cpu" {
		t.Errorf("--clock cpu got baseline_gflops=%v ratio=%v baseline=%q clock=%q, want a positive OpenBLAS rate, a ratio and clock cpu", *r.BaselineGFLOPS, r.Ratio, r.Baseline, r.Clock)
	}
}

// TestBenchSaysWhichMachine: every bench names the CPU, the load and the
// build on stderr; with --json stdout stays one JSON document.
func TestBenchSaysWhichMachine(t *testing.T) {
	args := []string{"bench", "sgemm", "--n", "16", "--rounds", "1", "--budget", "1ms", "--baseline=false"}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(loomBinary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("loom %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	first, _, _ := strings.Cut(stderr.String(), "\n")
	if !strings.HasPrefix(first, "# machine: ") || !strings.Contains(first, "CPUs") || !strings.Contains(first, "load average") {
		t.Errorf("loom bench sgemm's first stderr line is %q, want the machine", first)
	}
	stdout.Reset()
	stderr.Reset()
	cmd = exec.Command(loomBinary, append(args, "--json")...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("loom bench sgemm --json: %v\n%s", err, stderr.String())
	}
	var r sgemmResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || r.CPU == "" {
		t.Errorf("loom bench sgemm --json: stdout %q (cpu %q): %v", stdout.String(), r.CPU, err)
	}
	if !strings.Contains(stderr.String(), "# machine: ") {
		t.Errorf("loom bench sgemm --json: no machine line on stderr:\n%s", stderr.String())
	}
}
