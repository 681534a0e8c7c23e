package promtest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Server is a Prometheus server a test started.
type Server struct {
	// URL is its base URL, http://127.0.0.1:PORT.
	URL string
	// Log is the file its output goes to.
	Log string
}

// Start writes files (name → content: prometheus.yml and the rule files it
// names) into dir and runs Prometheus on them, with its data under dir,
// listening on a free loopback port. It returns once the server is ready;
// the server is killed when t ends.
func Start(t testing.TB, dir string, files map[string][]byte) *Server {
	t.Helper()
	bin := Binary(t, "prometheus")
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logPath := filepath.Join(dir, "prometheus.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	s := &Server{URL: "http://" + addr, Log: logPath}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus exited before it was ready:\n%s", b)
		default:
		}
		if resp, err := http.Get(s.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus not ready at %s after 30s:\n%s", s.URL, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Alert is one alert of /api/v1/alerts.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"` // pending, firing
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

// Alerts returns the server's active (pending and firing) alerts.
func (s *Server) Alerts() ([]Alert, error) {
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []Alert `json:"alerts"`
		} `json:"data"`
	}
	if err := s.get("/api/v1/alerts", &r); err != nil {
		return nil, err
	}
	return r.Data.Alerts, nil
}

// Target is one scrape target of /api/v1/targets.
type Target struct {
	ScrapePool string `json:"scrapePool"`
	ScrapeURL  string `json:"scrapeUrl"`
	Health     string `json:"health"` // up, down, unknown
	LastError  string `json:"lastError"`
}

// Targets returns the server's active scrape targets.
func (s *Server) Targets() ([]Target, error) {
	var r struct {
		Data struct {
			ActiveTargets []Target `json:"activeTargets"`
		} `json:"data"`
	}
	if err := s.get("/api/v1/targets", &r); err != nil {
		return nil, err
	}
	return r.Data.ActiveTargets, nil
}

func (s *Server) get(path string, v any) error {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(s.URL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}
