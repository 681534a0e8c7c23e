package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hashicorp/raft"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/internal/browsertest"
)

type fakeRaft struct{}

func (fakeRaft) Leader() (string, string) { return "c0", "10.0.0.1:7000" }
func (fakeRaft) IsLeader() bool           { return true }
func (fakeRaft) Term() uint64             { return 7 }
func (fakeRaft) State() string            { return "Leader" }
func (fakeRaft) Configuration() ([]raft.Server, error) {
	return []raft.Server{{ID: "c0", Address: "10.0.0.1:7000", Suffrage: raft.Voter}, {ID: "c1", Address: "10.0.0.2:7000", Suffrage: raft.Voter}}, nil
}

const demoManifest = `name: demo
recipe: vila
model: {size: tiny}
datasets: [{name: coyo, uri: "s3://data/coyo"}]
global_batch: 4
elastic: {min: 2, max: 2}
checkpoint: {interval: 10, keep: 2}
stages: [{name: align, steps: 40}, {name: sft, steps: 20}]
`

// demoState builds, through real commands and the real scheduler, a job
// that trained 25 steps, lost worker w1 (its lease expired), and restarted
// from the checkpoint at step 20 on w0 and w2 for 15 more steps.
func demoState(t *testing.T) (*coordinator.FSM, time.Time) {
	t.Helper()
	m, err := api.ParseManifest("demo.yaml", []byte(demoManifest))
	if err != nil {
		t.Fatal(err)
	}
	fsm := coordinator.NewFSM()
	now := time.Now().Add(-time.Minute)
	var index uint64
	apply := func(c *coordinator.Command) {
		t.Helper()
		c.Time = now
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		index++
		if r := fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}).(coordinator.Result); r.Err() != nil {
			t.Fatalf("%s: %v", c.Kind(), r.Err())
		}
	}
	plan := func() {
		t.Helper()
		var d coordinator.Decision
		fsm.Read(func(s *coordinator.State) { d = coordinator.Plan(s, now) })
		for _, c := range d.Commands {
			apply(c)
		}
	}
	report := func(gen int64, from, to int64) {
		for s := from; s <= to; s++ {
			now = now.Add(time.Second)
			v := map[string]coordinator.Float{"loss": coordinator.Float(3 - float64(s)/20), "itc": coordinator.Float(1 - float64(s)/50),
				"lr": 1e-3, "grad_norm": 0.5, "tokens_per_sec": 900, "step_time": 0.2, "comm_wait": 0.05, "data_wait": 0.02}
			if s == 25 {
				v["eval/retrieval_r1"] = 0.25
			}
			apply(&coordinator.Command{Progress: &coordinator.Progress{Reports: []coordinator.ProgressReport{{WorkerID: "w0", Job: "demo",
				Generation: gen, Step: s, Samples: 4 * s, Losses: map[string]coordinator.Float{"loss": coordinator.Float(3 - float64(s)/20)}, TokensPerSec: 450, StepTime: 200 * time.Millisecond,
				Steps: []coordinator.StepRecord{{Step: s, Stage: 0, UnixMs: now.UnixMilli(), Values: v}}}}}})
		}
	}
	for _, id := range []string{"w0", "w1"} {
		apply(&coordinator.Command{WorkerUp: &coordinator.WorkerUp{Worker: coordinator.WorkerInfo{ID: id, Addr: id + ":7100", Host: "h-" + id, GPUs: 1}}})
	}
	apply(&coordinator.Command{Submit: &coordinator.Submit{Manifest: *m}})
	plan() // generation 1 on w0, w1
	report(1, 1, 25)
	for _, st := range []int64{10, 20} {
		apply(&coordinator.Command{Commit: &coordinator.Commit{WorkerID: "w0", Job: "demo", Generation: 1, Step: st, Samples: 4 * st,
			Objects: []coordinator.ObjectInfo{{Path: fmt.Sprintf("s3://ckpt/demo/%d/model.safetensors", st), SHA256: strings.Repeat("ab", 32), Size: 3 << 20}}}})
	}
	apply(&coordinator.Command{WorkerUp: &coordinator.WorkerUp{Worker: coordinator.WorkerInfo{ID: "w2", Addr: "w2:7100", Host: "h-w2", GPUs: 1}}})
	apply(&coordinator.Command{WorkerDown: &coordinator.WorkerDown{WorkerID: "w1", Reason: "lease expired"}})
	plan() // generation 2: restart from step 20 on w0, w2
	var gen int64
	fsm.Read(func(s *coordinator.State) { gen = s.Jobs["demo"].Generation })
	if gen != 2 {
		t.Fatalf("after losing w1 the job is at generation %d, want 2", gen)
	}
	report(2, 21, 35)
	return fsm, now
}

func TestMain(m *testing.M) {
	code := m.Run()
	browsertest.Close()
	os.Exit(code)
}

// Browser returns a chromium tab for the test.
func Browser(t *testing.T, timeout time.Duration) context.Context { return browsertest.Tab(t, timeout) }

func serve(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

var (
	attr = browsertest.Attr
	text = browsertest.Text
)

func navigate(t *testing.T, ctx context.Context, u string) { browsertest.Navigate(t, ctx, u) }

// TestPagesInBrowser drives the three pages in chromium and checks what
// they show: the job, its loss curves with every point, the restart with
// its cause, the checkpoints, the evaluation result, the cluster.
func TestPagesInBrowser(t *testing.T) {
	fsm, _ := demoState(t)
	srv := serve(t, Config{NodeID: "c0", FSM: fsm, Raft: fakeRaft{}})
	ctx := Browser(t, 90*time.Second)

	navigate(t, ctx, srv.URL+"/#/jobs")
	row, err := text(ctx, `tr[data-job="demo"]`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"demo", "running", "1/2 align", "35/60", "58%", "loss 1.25 (itc 0.3)"} {
		if !strings.Contains(row, want) {
			t.Errorf("jobs row %q lacks %q", row, want)
		}
	}

	// Styles set by the script survive the Content-Security-Policy: the
	// progress bar is filled to 35/60.
	fill, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => { const b = document.querySelector('tr[data-job="demo"] .bar');
		return b.firstChild.getBoundingClientRect().width / b.getBoundingClientRect().width; })()`))
	if err != nil || math.Abs(fill-35.0/60) > 0.02 {
		t.Errorf("progress bar filled to %.3f (%v), want %.3f", fill, err, 35.0/60)
	}

	navigate(t, ctx, srv.URL+"/#/job/demo")
	// The stage-1 loss chart: steps 1–20 of generation 1 and 21–35 of
	// generation 2 (generation 1's 21–25 were replaced by the restart).
	for series, want := range map[string]int{"loss": 35, "itc": 35} {
		n, err := attr(ctx, `[data-chart="loss-0"] path[data-series="`+series+`"]`, "data-points")
		if err != nil {
			t.Fatal(err)
		}
		if n != strconv.Itoa(want) {
			t.Errorf("stage-1 %s curve has %s points, want %d", series, n, want)
		}
	}
	if _, err := attr(ctx, `[data-chart="loss-0"] line[data-mark="restart"]`, "x1"); err != nil {
		t.Errorf("the loss chart marks no restart: %v", err)
	}
	gen, err := text(ctx, `#generations tr[data-generation="2"]`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(gen, "restart") || !strings.Contains(gen, "w1") || !strings.Contains(gen, "20") {
		t.Errorf("generation 2's row %q does not show a restart from step 20 naming w1", gen)
	}
	ev, err := text(ctx, `#events tr[data-kind="worker-lost"]`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ev, "worker w1 lost (lease expired)") {
		t.Errorf("worker-lost event %q does not give the cause", ev)
	}
	for sel, want := range map[string]string{
		"#time-split":  "compute 65.0%, communication 25.0%, data 10.0%",
		"#checkpoints": "20",
		"#eval":        "retrieval_r1",
		"#timeline":    "1. align (40)",
		"#logs-hint":   "does not collect worker logs",
		"#job-workers": "w2",
		"#job-title":   "running",
	} {
		got, err := text(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got, want) {
			t.Errorf("%s shows %q, want it to contain %q", sel, got, want)
		}
	}
	if n, err := attr(ctx, `[data-chart="step-time"] polygon[data-series="communication"]`, "data-points"); err != nil || n != "35" {
		t.Errorf("step-time chart's communication area: %q points, %v; want 35", n, err)
	}

	navigate(t, ctx, srv.URL+"/#/cluster")
	for sel, want := range map[string]string{
		"#leader":                       "c0",
		"#term":                         "7",
		`#servers tr[data-node="c1"]`:   "follower",
		`#workers tr[data-worker="w1"]`: "down",
		`#workers tr[data-worker="w2"]`: "demo",
	} {
		got, err := text(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got, want) {
			t.Errorf("%s shows %q, want %q", sel, got, want)
		}
	}
}

// The page updates itself: a step applied after the page loaded shows up.
func TestPageUpdatesLive(t *testing.T) {
	fsm, now := demoState(t)
	srv := serve(t, Config{NodeID: "c0", FSM: fsm, Raft: fakeRaft{}})
	ctx := Browser(t, 60*time.Second)
	sel := `[data-chart="loss-0"] path[data-series="loss"]`
	navigate(t, ctx, srv.URL+"/#/job/demo")
	c := &coordinator.Command{Time: now, Progress: &coordinator.Progress{Reports: []coordinator.ProgressReport{{WorkerID: "w0", Job: "demo", Generation: 2, Step: 36,
		Steps: []coordinator.StepRecord{{Step: 36, Values: map[string]coordinator.Float{"loss": 1}}}}}}}
	b, _ := c.Encode()
	fsm.Apply(&raft.Log{Index: 1000, Type: raft.LogCommand, Data: b})
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := attr(ctx, sel, "data-points")
		if err != nil {
			t.Fatal(err)
		}
		if n == "36" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a new step the loss curve still has %s points, want 36", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// With a token, the UI asks for it; the wrong one is refused, the right
// one opens the pages (a cookie, not the token, is kept).
func TestLoginInBrowser(t *testing.T) {
	fsm, _ := demoState(t)
	srv := serve(t, Config{NodeID: "c0", FSM: fsm, Raft: fakeRaft{}, Tokens: []string{"user-s3cret", "admin-s3cret"},
		WorkerLogs: func(id string, n int) ([]string, error) {
			return []string{fmt.Sprintf(`{"msg":"step","worker":%q,"step":35}`, id)}, nil
		}})
	ctx := Browser(t, 60*time.Second)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/#/job/demo"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), "guess"), chromedp.Click(chromedp.ID("login"))); err != nil {
		t.Fatal(err)
	}
	// The refusal is a new page: wait for its message (the old page's
	// form is still there for a moment after the click).
	var errText string
	for deadline := time.Now().Add(15 * time.Second); errText == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		errText, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById("login-error") || {}).textContent || ""`))
	}
	if !strings.Contains(errText, "not the users'") {
		t.Errorf("wrong token: the page says %q, want a refusal", errText)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), "user-s3cret"), chromedp.Click(chromedp.ID("login"))); err != nil {
		t.Fatal(err)
	}
	if _, err := text(ctx, `tr[data-job="demo"]`); err != nil {
		t.Fatalf("after logging in: %v", err)
	}
	navigate(t, ctx, srv.URL+"/#/job/demo")
	lg, err := text(ctx, `pre[data-log="w2"]`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lg, `"worker":"w2","step":35`) {
		t.Errorf("w2's log tail shows %q", lg)
	}
}

func get(t *testing.T, u string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestAuthAndEndpoints(t *testing.T) {
	fsm, _ := demoState(t)
	srv := serve(t, Config{NodeID: "c0", FSM: fsm, Raft: fakeRaft{}, Tokens: []string{"user-s3cret"}})
	for _, c := range []struct {
		path string
		hdr  map[string]string
		code int
		body string
	}{
		{"/api/jobs", nil, 401, "missing or wrong token"},
		{"/api/jobs", map[string]string{"Authorization": "Bearer nope"}, 401, "missing or wrong token"},
		{"/", nil, 401, `name="token"`},
		{"/ui/app.js", nil, 200, "use strict"},
		{"/api/jobs", map[string]string{"Authorization": "Bearer user-s3cret"}, 200, `"name":"demo"`},
		{"/api/jobs", map[string]string{"Cookie": cookieName + "=" + session("user-s3cret")}, 200, `"name":"demo"`},
		{"/api/jobs", map[string]string{"Cookie": cookieName + "=user-s3cret"}, 401, "missing or wrong token"},
		{"/api/jobs/nope", map[string]string{"Authorization": "Bearer user-s3cret"}, 404, `no job named \"nope\"`},
		{"/api/jobs/demo/metrics?max_points=x", map[string]string{"Authorization": "Bearer user-s3cret"}, 400, "max_points must be"},
		{"/api/jobs/demo/metrics?from=-3", map[string]string{"Authorization": "Bearer user-s3cret"}, 400, "from must be a step number"},
		{"/api/jobs/demo/metrics?series=loss&max_points=5", map[string]string{"Authorization": "Bearer user-s3cret"}, 200, `"name":"loss"`},
	} {
		resp, body := get(t, srv.URL+c.path, c.hdr)
		if resp.StatusCode != c.code || !strings.Contains(body, c.body) {
			t.Errorf("GET %s %v = %d %.120q, want %d containing %q", c.path, c.hdr, resp.StatusCode, body, c.code, c.body)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", c.path, csp)
		}
	}
	// At most max_points points, their steps adding up.
	_, body := get(t, srv.URL+"/api/jobs/demo/metrics?series=loss&max_points=5", map[string]string{"Authorization": "Bearer user-s3cret"})
	var m metricsJSON
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	var steps coordinator.Float
	for _, p := range m.Series[0].Points {
		steps += p[6]
	}
	if len(m.Series) != 1 || len(m.Series[0].Points) > 5 || steps != 35 {
		t.Errorf("loss in at most 5 points: %d series, %d points covering %v steps; want 1, ≤5, 35", len(m.Series), len(m.Series[0].Points), steps)
	}
	// Logging in sets the cookie; a wrong token does not.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for tok, code := range map[string]int{"user-s3cret": 303, "guess": 401} {
		resp, err := noRedirect.PostForm(srv.URL+"/login", url.Values{"token": {tok}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var cookie *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == cookieName {
				cookie = c
			}
		}
		if resp.StatusCode != code || (code == 303) != (cookie != nil) {
			t.Errorf("login with %q = %d, cookie %v; want %d and a cookie only on success", tok, resp.StatusCode, cookie, code)
		}
		if cookie != nil && (!cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || strings.Contains(cookie.Value, tok)) {
			t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict and no token in it", cookie)
		}
	}
	// Certificates only: the plain-HTTP port cannot check anyone.
	locked := serve(t, Config{NodeID: "c0", FSM: fsm, Raft: fakeRaft{}, CertsOnly: true})
	if resp, body := get(t, locked.URL+"/api/jobs", nil); resp.StatusCode != 403 || !strings.Contains(body, "certificate only") {
		t.Errorf("certificate-only coordinator: GET /api/jobs = %d %q, want 403 saying why", resp.StatusCode, body)
	}
	if _, err := New(Config{FSM: fsm, Raft: fakeRaft{}, Tokens: []string{""}}); err == nil {
		t.Error("New accepted an empty token")
	}
}

// A NaN loss reaches the page's data as "NaN", not as a broken answer.
func TestMetricsNaN(t *testing.T) {
	fsm, now := demoState(t)
	c := &coordinator.Command{Time: now, Progress: &coordinator.Progress{Reports: []coordinator.ProgressReport{{WorkerID: "w0", Job: "demo", Generation: 2, Step: 36,
		Steps: []coordinator.StepRecord{{Step: 36, Values: map[string]coordinator.Float{"loss": coordinator.Float(math.NaN())}}}}}}}
	b, _ := c.Encode()
	fsm.Apply(&raft.Log{Index: 1000, Type: raft.LogCommand, Data: b})
	srv := serve(t, Config{NodeID: "c0", FSM: fsm, Raft: fakeRaft{}})
	resp, body := get(t, srv.URL+"/api/jobs/demo/metrics?series=loss", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `[36,"NaN",0,2`) {
		t.Errorf("metrics with a NaN loss = %d %.200q, want the point [36,\"NaN\",0,2,...]", resp.StatusCode, body)
	}
	// The job's latest losses (from the history's last step) say NaN too.
	for _, path := range []string{"/api/jobs", "/api/jobs/demo"} {
		if resp, body := get(t, srv.URL+path, nil); resp.StatusCode != 200 || !strings.Contains(body, `"losses":{"loss":"NaN"}`) {
			t.Errorf("GET %s with a NaN loss = %d %.300q, want losses {\"loss\":\"NaN\"}", path, resp.StatusCode, body)
		}
	}
}

// A checkpoint set aside as corrupt shows on the job page with what the
// worker found, and the job falls back to the one before (issue 16 part 5).
func TestCorruptCheckpointInBrowser(t *testing.T) {
	fsm, now := demoState(t)
	var index uint64 = 1 << 20
	apply := func(c *coordinator.Command) {
		t.Helper()
		c.Time = now
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		index++
		if r := fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}).(coordinator.Result); r.Err() != nil {
			t.Fatalf("%s: %v", c.Kind(), r.Err())
		}
	}
	apply(&coordinator.Command{WorkerFailed: &coordinator.WorkerFailed{WorkerID: "w0", Job: "demo", Generation: 2,
		Error: "checkpoint at step 20 is corrupt: sha256 mismatch", Kind: coordinator.FailCorruptCheckpoint, CheckpointStep: 20}})
	var d coordinator.Decision
	fsm.Read(func(s *coordinator.State) { d = coordinator.Plan(s, now) })
	for _, c := range d.Commands {
		apply(c)
	}
	var restore int64 = -1
	fsm.Read(func(s *coordinator.State) {
		if j := s.Jobs["demo"]; j.Generation == 3 && j.Restore != nil {
			restore = j.Restore.Step
		}
	})
	if restore != 10 {
		t.Fatalf("after the corrupt checkpoint at step 20 generation 3 restores from step %d, want 10", restore)
	}
	srv := serve(t, Config{NodeID: "c0", FSM: fsm, Raft: fakeRaft{}})
	ctx := Browser(t, 90*time.Second)
	navigate(t, ctx, srv.URL+"/#/job/demo")
	got, err := text(ctx, "#corrupt-checkpoints")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"20", "checkpoint at step 20 is corrupt: sha256 mismatch"} {
		if !strings.Contains(got, want) {
			t.Errorf("#corrupt-checkpoints shows %q, want it to contain %q", got, want)
		}
	}
	if ev, err := text(ctx, `#events tr[data-kind="checkpoint-corrupt"]`); err != nil || !strings.Contains(ev, "falling back to step 10") {
		t.Errorf("checkpoint-corrupt event %q (%v), want it to say it falls back to step 10", ev, err)
	}
}
