package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/api/loompb"
)

func TestParsePeers(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		err  string
	}{
		{"", "[]", ""},
		{"c0=a:1,c1=b:2", "[{c0 a:1} {c1 b:2}]", ""},
		{"c0=a:1, c1=b:2,", "[{c0 a:1} {c1 b:2}]", ""},
		{"c0", "", `--peers entry "c0": want id=host:port`},
		{"c0=a", "", `--peers entry "c0=a"`},
		{"c0=a:1,c0=b:2", "", `id "c0" listed twice`},
	} {
		got, err := parsePeers(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parsePeers(%q) error = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parsePeers(%q) = %v", c.in, err)
			continue
		}
		if s := strings.ReplaceAll(strings.TrimSpace(sprint(got)), "  ", " "); s != c.want {
			t.Errorf("parsePeers(%q) = %s, want %s", c.in, s, c.want)
		}
	}
}

func TestProgressBar(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		want        string
	}{
		{0, 100, "[..........]   0%"},
		{50, 100, "[#####.....]  50%"},
		{100, 100, "[##########] 100%"},
		{150, 100, "[##########] 100%"},
		{3, 0, "[##########] 100%"},
	} {
		if got := progressBar(c.done, c.total, 10); got != c.want {
			t.Errorf("progressBar(%d, %d, 10) = %q, want %q", c.done, c.total, got, c.want)
		}
	}
}

// TestCoordinatorCLI runs a one-node coordinator in-process and drives it
// with loom submit, status, cancel and resume.
func TestCoordinatorCLI(t *testing.T) {
	t.Setenv("LOOM_TOKEN", "tok")
	t.Setenv("LOOM_WORKER_TOKEN", "worker-tok")
	t.Setenv("LOOM_NODE_TOKEN", "node-tok")
	t.Setenv("LOOM_ADMIN_TOKEN", "admin-tok")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	type addrs struct{ api, http string }
	ready := make(chan addrs, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	var runErr error
	go func() {
		defer wg.Done()
		runErr = runCoordinator(ctx, coordinatorFlags{id: "c0", dataDir: filepath.Join(dir, "c0"), raftAddr: "127.0.0.1:0",
			grpcAddr: "127.0.0.1:0", grpcAdvertise: "", httpAddr: "127.0.0.1:0", tick: 50 * time.Millisecond, etcdPrefix: "/loom/workers"},
			func(api, http string) { ready <- addrs{api, http} })
	}()
	defer func() {
		cancel()
		wg.Wait()
		if runErr != nil {
			t.Errorf("runCoordinator: %v", runErr)
		}
	}()
	var a addrs
	select {
	case a = <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("coordinator did not start")
	}
	// Ready once a leader is known.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + a.http + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(body), "leader c0") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz never ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The web UI on the same port asks for the users' (or admins') token;
	// the probes and /metrics stay open.
	for _, c := range []struct {
		path, token string
		code        int
	}{{"/", "", 401}, {"/api/jobs", "", 401}, {"/api/jobs", "worker-tok", 401}, {"/api/jobs", "tok", 200}, {"/api/cluster", "admin-tok", 200}, {"/metrics", "", 200}} {
		req, _ := http.NewRequest("GET", "http://"+a.http+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("GET %s with token %q = %d, want %d", c.path, c.token, resp.StatusCode, c.code)
		}
	}
	manifest := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(manifest, []byte(`name: cli-job
recipe: blip2
model: {size: tiny}
datasets: [{name: coco, uri: "s3://data/coco"}]
global_batch: 8
stages: [{name: representation, steps: 100}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: x\nrecipe: blip3\n"), 0o644)
	co := "--coordinator=" + a.api
	for _, c := range []struct {
		args []string
		want string
		code int // expected exit code when an error is wanted
	}{
		{[]string{"submit", "--dry-run=true", manifest}, "stall_grace: 5m0s", 0},
		{[]string{"submit", "--dry-run=false", co, bad}, "bad.yaml:2: recipe: \"blip3\" is not a recipe", 2},
		{[]string{"submit", "--dry-run=false", co, manifest}, "submitted job cli-job: blip2 tiny, 1 stages, 100 steps (pending)", 0},
		{[]string{"submit", "--dry-run=false", co, manifest}, `a job named "cli-job" exists`, 2},
		{[]string{"status", co, "--watch=false", "--json=false"}, "cli-job  pending  1/1 representation  0/100  [....................]   0%", 0},
		{[]string{"status", co, "--watch=false", "--json=false", "cli-job"}, "job cli-job (blip2): pending — waiting for workers", 0},
		{[]string{"status", co, "--watch=false", "--json=true", "cli-job"}, `"totalSteps"`, 0},
		{[]string{"status", co, "--watch=false", "--json=false", "nope"}, `no job named "nope"`, 2},
		{[]string{"cancel", co, "cli-job"}, "job cli-job cancelled at step 0/100", 0},
		{[]string{"status", co, "--watch=true", "--json=false", "cli-job"}, "job cli-job cancelled: cancelled by user", 1},
		{[]string{"resume", co, "--from-step=5", "cli-job"}, "no committed checkpoint at step 5", 2},
		{[]string{"resume", co, "--from-step=0", "cli-job"}, "job cli-job pending, resuming from step 0/100", 0},
	} {
		out, err := run(t, c.args...)
		got := out
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("loom %s\n got: %s\nwant it to contain: %s", strings.Join(c.args, " "), got, c.want)
		}
		if code := 0; err != nil {
			code = exitCode(err)
			if code != c.code {
				t.Errorf("loom %s: exit code %d, want %d", strings.Join(c.args, " "), code, c.code)
			}
		} else if c.code != 0 {
			t.Errorf("loom %s: succeeded, want exit code %d", strings.Join(c.args, " "), c.code)
		}
	}
	// A watch stream left open does not keep the coordinator from stopping
	// (the deferred shutdown above would hang).
	cc, err := (&clientFlags{addr: a.api, tokenEnv: "LOOM_WORKER_TOKEN"}).dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() }) // after the coordinator has stopped
	st, err := loompb.NewWorkersClient(cc).WatchAssignment(context.Background(), &loompb.WatchAssignmentRequest{WorkerId: "w-open"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LOOM_TOKEN", "wrong")
	_, err = run(t, "status", co, "--watch=false", "--json=false")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "bearer token") {
		t.Errorf("status with a wrong token = %v, want exit 2 naming the bearer token", err)
	}
}

func sprint(v any) string { return fmt.Sprint(v) }
