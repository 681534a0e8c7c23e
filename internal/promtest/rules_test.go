package promtest

import (
	"strings"
	"testing"
)

func TestShortenFor(t *testing.T) {
	src := `groups:
  - name: g
    rules:
      - record: r
        expr: sum(x)
      - alert: A
        expr: x > 1
        for: 10m
        labels: {severity: warning}
      - alert: B
        expr: y == 0
        for: 1h
`
	out, err := ShortenFor([]byte(src), "2s")
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	if strings.Count(got, "for: 2s") != 2 || strings.Contains(got, "10m") || strings.Contains(got, "1h") {
		t.Errorf("ShortenFor:\n%s", got)
	}
	for _, keep := range []string{"expr: sum(x)", "expr: x > 1", "expr: y == 0", "severity: warning", "record: r"} {
		if !strings.Contains(got, keep) {
			t.Errorf("ShortenFor lost %q:\n%s", keep, got)
		}
	}
	for _, bad := range []string{"", "groups: 3", "groups:\n  - name: g\n", "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: x\n"} {
		if _, err := ShortenFor([]byte(bad), "2s"); err == nil {
			t.Errorf("ShortenFor(%q) = nil error", bad)
		}
	}
}
