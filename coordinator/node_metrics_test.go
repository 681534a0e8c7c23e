package coordinator

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/loomtrain/loom/internal/promtest"
)

// scrapeNode returns the node's /metrics families by name, and the body.
func scrapeNode(t *testing.T, n *Node) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	srv := httptest.NewServer(n.HTTPHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, b)
	}
	return fams, string(b)
}

// value returns the sample of family name whose labels include want, and
// whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

// TestNodeMetricsLeaderChanges: every node counts the leader changes it
// sees, its first leader included; a spell without a leader is none.
func TestNodeMetricsLeaderChanges(t *testing.T) {
	c, nodes := startFakeCluster(t, []string{"n1", "n2"}, nil, nil)
	changes := func(i int) float64 {
		fams, _ := scrapeNode(t, nodes[i].node)
		v, _ := value(fams, "loom_coordinator_leader_changes_seen_total", nil)
		return v
	}
	wait := func(want float64) {
		t.Helper()
		waitFor(t, 5*time.Second, "leader changes seen", func() bool { return changes(0) == want && changes(1) == want })
	}
	wait(1)
	c.setLeader("n2")
	wait(2)
	c.setLeader("")
	time.Sleep(600 * time.Millisecond) // two leaderLoop polls
	if a, b := changes(0), changes(1); a != 2 || b != 2 {
		t.Errorf("with no leader: %v and %v changes, want 2 (unchanged)", a, b)
	}
	c.setLeader("n2") // back to the same leader: no change
	time.Sleep(600 * time.Millisecond)
	c.setLeader("n1")
	wait(3)
}

// TestNodeMetricsJobs: the per-job series the alert rules use
// (deploy/prometheus/alerts.yml) follow the replicated state, and the page
// passes promtool's linter.
func TestNodeMetricsJobs(t *testing.T) {
	_, nodes := startFakeCluster(t, []string{"n1"}, nil, nil)
	s := NewState()
	committed := time.Unix(1_700_000_000, 250_000_000)
	s.Jobs["run"] = &Job{Name: "run", State: Running, Step: 7, Restarts: 2,
		Checkpoints: []Checkpoint{{Step: 3, Committed: committed.Add(-time.Hour)}, {Step: 5, Committed: committed}}}
	s.Jobs["wait"] = &Job{Name: "wait", State: Pending}
	s.Workers["w1"] = &Worker{WorkerInfo: WorkerInfo{ID: "w1"}, Up: true, Job: "run"}
	s.Workers["w2"] = &Worker{WorkerInfo: WorkerInfo{ID: "w2"}}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].fsm.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	fams, body := scrapeNode(t, nodes[0].node)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
		absent bool
	}{
		{name: "loom_job_running", labels: map[string]string{"loom_job": "run"}, want: 1},
		{name: "loom_job_running", labels: map[string]string{"loom_job": "wait"}, want: 0},
		{name: "loom_job_step", labels: map[string]string{"loom_job": "run"}, want: 7},
		{name: "loom_job_restarts_total", labels: map[string]string{"loom_job": "run"}, want: 2},
		{name: "loom_job_last_checkpoint_timestamp_seconds", labels: map[string]string{"loom_job": "run"}, want: 1_700_000_000.25},
		{name: "loom_job_last_checkpoint_timestamp_seconds", labels: map[string]string{"loom_job": "wait"}, absent: true},
		{name: "loom_coordinator_workers", labels: map[string]string{"status": "busy"}, want: 1},
		{name: "loom_coordinator_workers", labels: map[string]string{"status": "down"}, want: 1},
		{name: "loom_coordinator_jobs", labels: map[string]string{"state": "running"}, want: 1},
	} {
		v, ok := value(fams, tc.name, tc.labels)
		switch {
		case tc.absent && ok:
			t.Errorf("%s%v = %v, want no sample", tc.name, tc.labels, v)
		case !tc.absent && (!ok || v != tc.want):
			t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, v, ok, tc.want)
		}
	}
	if _, ok := fams["loom_coordinator_applied_commands_total"]; !ok {
		t.Error("no loom_coordinator_applied_commands_total")
	}
	if strings.Contains(body, "loom_coordinator_applied_commands ") {
		t.Error("the old counter name without _total is still served")
	}
	promtest.CheckMetrics(t, "a coordinator's /metrics", body)
}
