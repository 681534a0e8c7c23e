package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// run executes the command tree with args and returns its stdout.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&errb)
	rootCmd.SetArgs(args)
	defer rootCmd.SetArgs(nil)
	err := rootCmd.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version")
	if err != nil {
		t.Fatalf("loom version: %v", err)
	}
	for _, want := range []string{"module:   github.com/loomtrain/loom", "go:       go1.", "platform: ", "cpu:      "} {
		if !strings.Contains(out, want) {
			t.Errorf("loom version output lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "version", "--json")
	if err != nil {
		t.Fatalf("loom version --json: %v", err)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("loom version --json printed non-JSON %q: %v", out, err)
	}
	for _, k := range []string{"module", "version", "revision", "go_version", "os", "arch", "cpu_features"} {
		if _, ok := v[k]; !ok {
			t.Errorf("loom version --json lacks field %q: %s", k, out)
		}
	}
}

func TestLoggerFlags(t *testing.T) {
	for _, tc := range []struct {
		format, level string
		wantErr       string
		wantJSON      bool
	}{
		{"json", "info", "", true},
		{"text", "debug", "", false},
		{"auto", "warn", "", true}, // a bytes.Buffer is not a terminal
		{"xml", "info", "--log-format", false},
		{"json", "loud", "--log-level", false},
	} {
		var buf bytes.Buffer
		l, err := newLogger(&buf, tc.format, tc.level)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("newLogger(%q, %q) error = %v, want one naming %s", tc.format, tc.level, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("newLogger(%q, %q): %v", tc.format, tc.level, err)
		}
		l.Error("hello", "k", 1)
		gotJSON := json.Valid(bytes.TrimSpace(buf.Bytes()))
		if gotJSON != tc.wantJSON {
			t.Errorf("newLogger(%q, %q) wrote %q: JSON = %v, want %v", tc.format, tc.level, buf.String(), gotJSON, tc.wantJSON)
		}
	}
}

func TestUnknownCommandFails(t *testing.T) {
	if _, err := run(t, "no-such-command"); err == nil {
		t.Fatal("loom no-such-command: got nil error, want an error")
	}
}
