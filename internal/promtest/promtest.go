package promtest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Binary returns the path of name (promtool or prometheus): it skips t
// without one, except in CI (CI=true), where a missing binary fails it.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; CI must install it (.ci/run: apt-get install prometheus)", name)
	}
	t.Skipf("%s is not installed (Debian: apt-get install prometheus); the Prometheus tests need it", name)
	return ""
}

// Promtool runs `promtool ARGS...` with stdin and returns its combined
// output, failing t (with the output) when it exits non-zero.
func Promtool(t testing.TB, stdin io.Reader, args ...string) string {
	t.Helper()
	cmd := exec.Command(Binary(t, "promtool"), args...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// CheckMetrics pipes body (a /metrics page in the text format) through
// `promtool check metrics`, failing t with every problem it reports;
// what names the page in the message.
func CheckMetrics(t testing.TB, what, body string) {
	t.Helper()
	cmd := exec.Command(Binary(t, "promtool"), "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on %s: %v\n%s", what, err, out)
	}
}

// Scrape GETs url (a /metrics address) and returns the body, failing t
// unless it answers 200 within 10s.
func Scrape(t testing.TB, url string) string {
	t.Helper()
	cl := http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape %s: status %d, %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// String formats a Prometheus duration (1h, 5m, 30s, 250ms) from d, for
// generated configs.
func String(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}
