package promtest

import (
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

// Promtool runs `promtool ARGS...` in directory dir and returns its
// combined output, failing t (with the output) when it exits non-zero.
func Promtool(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(Binary(t, "promtool"), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// CheckMetrics pipes body (a /metrics page in the text format) through
// `promtool check metrics`, failing t with every problem it reports;
// what names the page in the message. Problems of series whose names
// start with one of upstream (another project's metrics, such as etcd's,
// whose names Loom cannot change) are logged instead; anything else
// promtool says, a parse error included, still fails t.
func CheckMetrics(t testing.TB, what, body string, upstream ...string) {
	t.Helper()
	cmd := exec.Command(Binary(t, "promtool"), "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	var bad, tolerated []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case strings.TrimSpace(l) == "":
		case hasAnyPrefix(strings.TrimSpace(l), upstream):
			tolerated = append(tolerated, l)
		default:
			bad = append(bad, l)
		}
	}
	if len(tolerated) > 0 {
		t.Logf("promtool check metrics on %s: %d problems in upstream series %v, not Loom's to fix:\n%s", what, len(tolerated), upstream, strings.Join(tolerated, "\n"))
	}
	if len(bad) > 0 || err != nil && len(tolerated) == 0 {
		t.Errorf("promtool check metrics on %s: %v\n%s", what, err, strings.Join(bad, "\n"))
	}
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
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
