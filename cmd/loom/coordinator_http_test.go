package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := 1; i <= 20000; i++ { // more than maxLogTail bytes
		fmt.Fprintf(&b, "line %05d %s\n", i, strings.Repeat("x", 20))
	}
	if err := os.WriteFile(filepath.Join(dir, "w0.log"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "w1.log"), nil, 0o644)
	tail := logTail(dir)
	lines, err := tail("w0", 3)
	if err != nil || len(lines) != 3 || !strings.HasPrefix(lines[0], "line 19998 ") || !strings.HasPrefix(lines[2], "line 20000 ") {
		t.Fatalf("tail(w0, 3) = %q, %v; want lines 19998–20000", lines, err)
	}
	if lines, err := tail("w0", 1<<20); err != nil || !strings.HasPrefix(lines[0], "line ") || len(lines[0]) != len(lines[1]) {
		t.Errorf("tail of a long log starts with %q (%v); want a whole line, not a cut one", lines[0], err)
	}
	if lines, err := tail("w1", 5); err != nil || len(lines) != 0 {
		t.Errorf("tail of an empty log = %q, %v", lines, err)
	}
	if _, err := tail("w9", 5); err == nil || !strings.Contains(err.Error(), "no log at") {
		t.Errorf("tail of a missing log: %v, want it to say where it looked", err)
	}
}
