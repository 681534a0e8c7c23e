package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loomtrain/loom/models"
)

// guideSkip opens a sh block of a guide that its test does not run.
const guideSkip = "# not run by the test"

// guideBlock is one ```sh block of a markdown guide.
type guideBlock struct {
	line int // of the opening fence, 1-based
	text string
}

// shellBlocks returns the ```sh blocks of a markdown file, in order,
// without those whose first line is guideSkip.
func shellBlocks(t *testing.T, path string) []guideBlock {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []guideBlock
	var cur *guideBlock
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(l) == "```sh":
			cur = &guideBlock{line: i + 1}
		case cur != nil && strings.TrimSpace(l) == "```":
			if !strings.HasPrefix(cur.text, guideSkip) {
				blocks = append(blocks, *cur)
			}
			cur = nil
		case cur != nil:
			cur.text += l + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("%s: the sh block at line %d is not closed", path, cur.line)
	}
	return blocks
}

// guidePorts are the offsets from LOOM_PORT_BASE that docs/bare-metal.md
// listens on.
var guidePorts = []int{0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32, 40, 41, 50, 51, 60, 61}

// freePortBase finds a base for which every port of guidePorts is free on
// 127.0.0.1 now.
func freePortBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		// Below Linux's ephemeral range (32768-60999), where the
		// processes' own outgoing connections could take a port between
		// this check and the guide's use of it.
		base := 10000 + 100*rand.IntN(220)
		ok := true
		var ls []net.Listener
		for _, off := range guidePorts {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+off))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free range of ports for the guide")
	return 0
}

// TestBareMetalGuide runs every sh block of docs/bare-metal.md as written,
// in order, in one bash session with the loom binary first on PATH, and
// checks what they did: loom dev trained, the cluster had three voters,
// the job survived a killed worker (replaced by a new one) and a killed
// leader, ended succeeded, was exported, and every process was stopped.
func TestBareMetalGuide(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	for _, tool := range []string{"bash", "curl", "openssl", "pgrep"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the guide needs %s: %v", tool, err)
		}
	}
	blocks := shellBlocks(t, filepath.Join("..", "..", "docs", "bare-metal.md"))
	if len(blocks) < 10 {
		t.Fatalf("docs/bare-metal.md has %d sh blocks to run; the parser or the guide is broken", len(blocks))
	}
	var script strings.Builder
	script.WriteString("set -e -o pipefail\n")
	for i, b := range blocks {
		// A marker between blocks says which one failed, and scopes the
		// checks below to a block's output.
		fmt.Fprintf(&script, "echo '### block %d (docs/bare-metal.md:%d)'\n%s", i, b.line, b.text)
	}
	script.WriteString("echo '### end'\n")

	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	work := filepath.Join(tmp, "work")
	for _, d := range []string{bin, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(loomBinary, filepath.Join(bin, "loom")); err != nil {
		t.Fatal(err)
	}
	scriptPath := filepath.Join(tmp, "guide.sh")
	if err := os.WriteFile(scriptPath, []byte(script.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// The guide sets everything it needs; nothing of the caller's Loom or
	// AWS settings may leak in.
	var env []string
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "LOOM_") || strings.HasPrefix(e, "AWS_") {
			continue
		}
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			e = "PATH=" + bin + string(os.PathListSeparator) + v
		}
		env = append(env, e)
	}
	base := freePortBase(t)
	env = append(env, "LOOM_PORT_BASE="+strconv.Itoa(base))

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.Command("bash", scriptPath)
	cmd.Dir = work
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out lockedBuffer
	cmd.Stdout = &lockedWriter{&out}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	// Whatever happens, nothing the guide started outlives the test.
	defer syscall.Kill(-pgid, syscall.SIGKILL)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
		err = fmt.Errorf("still running after 6 minutes")
	}
	text := out.String()
	dir := filepath.Join(work, "loom-bare")
	if err != nil {
		t.Fatalf("the guide failed after %s: %v\n%s%s", time.Since(start).Round(time.Second), err, lastBlock(text), logTails(dir))
	}
	t.Logf("the guide ran in %s (ports from %d)", time.Since(start).Round(time.Second), base)
	if strings.Count(text, "### block ") != len(blocks) || !strings.Contains(text, "### end") {
		t.Fatalf("not every block ran:\n%s", text)
	}

	blockOut := func(pattern string) string { // the output of the block whose text matches pattern
		t.Helper()
		re := regexp.MustCompile(pattern)
		for i, b := range blocks {
			if re.MatchString(b.text) {
				s := text[strings.Index(text, fmt.Sprintf("### block %d ", i)):]
				s = s[strings.Index(s, "\n")+1:]
				return s[:strings.Index(s, "### ")]
			}
		}
		t.Fatalf("no block of the guide matches %q", pattern)
		return ""
	}
	check := func(what, s string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(s, w) {
				t.Errorf("%s: no %q in\n%s", what, w, s)
			}
		}
	}
	check("loom dev", blockOut(`(?m)^loom dev `), "job blip2-tiny succeeded")
	check("loom data", blockOut(`loom data verify`), "shapes")

	// Three voters, before and after the leader is killed, and a new leader.
	voters := func(members string) (n int, leader string) {
		for _, l := range strings.Split(members, "\n") {
			f := strings.Fields(l)
			if len(f) >= 4 && f[3] == "voter" {
				n++
				if len(f) == 5 && f[4] == "*" {
					leader = f[0]
				}
			}
		}
		return n, leader
	}
	if n, leader := voters(blockOut(`LOOM_ADMIN_TOKEN=\$\(cat admin.token\) loom cluster members`)); n != 3 || leader == "" {
		t.Errorf("loom cluster members after the start: %d voters, leader %q; want 3 and a leader", n, leader)
	}
	kill := blockOut(`kill -KILL \$\(cat run/\$leader.pid\)`)
	m := regexp.MustCompile(`killing the leader, (c\d)`).FindStringSubmatch(kill)
	if m == nil {
		t.Fatalf("the leader block printed no leader:\n%s", kill)
	}
	if n, leader := voters(kill[strings.Index(kill, m[0]):]); n != 3 || leader == "" || leader == m[1] {
		t.Errorf("loom cluster members after killing the leader %s: %d voters, leader %q; want 3 and another leader", m[1], n, leader)
	}
	if n, leader := voters(blockOut(`coord \$leader \$n`)); n != 3 || leader == "" {
		t.Errorf("loom cluster members after restarting %s: %d voters, leader %q", m[1], n, leader)
	}

	// The killed worker is replaced: a generation on w0 and w2 after w1
	// was lost, and the job ends succeeded with every step and checkpoint.
	check("after killing w1", blockOut(`worker w2 2`), "w0 w2")
	final := blockOut(`loom status shapes --watch`)
	check("the finished job", final, "succeeded", "step 240/240", "lost w1", "[w0 w2]", "1 restarts")
	if !regexp.MustCompile(`checkpoints .*\b240\b`).MatchString(final) {
		t.Errorf("no checkpoint at step 240 in\n%s", final)
	}
	check("loom logs", blockOut(`loom logs shapes`), "gen 1 rank 0")
	check("loom export", blockOut(`loom export shapes`), "step 240")
	if _, err := models.Open(filepath.Join(dir, "shapes.safetensors")); err != nil {
		t.Errorf("the exported model: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shapes-llm", "config.json")); err != nil {
		t.Errorf("the exported LLM: %v", err)
	}

	// Mutual TLS: the same cluster again, clients proving their role by
	// certificate alone; a user's certificate may not list the members.
	tlsOut := blockOut(`unset LOOM_TOKEN LOOM_ADMIN_TOKEN`)
	check("loom status with a user certificate", tlsOut, "shapes", "succeeded", "may not call Membership.Members", "refused, exit status 2")
	if n, leader := voters(tlsOut); n != 3 || leader == "" {
		t.Errorf("loom cluster members with an admin certificate: %d voters, leader %q; want 3 and a leader:\n%s", n, leader, tlsOut)
	}

	// Shut down: no process of the guide is left.
	if out, err := exec.Command("pgrep", "-g", strconv.Itoa(pgid)).Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("processes left after the shut-down block: %s", out)
	}
}

// lockedWriter writes to a lockedBuffer.
type lockedWriter struct{ b *lockedBuffer }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.b.WriteString(string(p))
	return len(p), nil
}

// lastBlock returns the output from the last block marker on.
func lastBlock(text string) string {
	if i := strings.LastIndex(text, "### block "); i >= 0 {
		return text[i:]
	}
	return text
}

// logTails returns the last lines of every log under dir/logs.
func logTails(dir string) string {
	var s strings.Builder
	files, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&s, "\n--- %s (last lines)\n%s\n", filepath.Base(f), strings.Join(lines, "\n"))
	}
	return s.String()
}

// TestShellBlocks: only ```sh blocks are run, in order, with their line,
// and a block opened by guideSkip is left out.
func TestShellBlocks(t *testing.T) {
	md := filepath.Join(t.TempDir(), "g.md")
	os.WriteFile(md, []byte("# g\n\n```sh\necho one\n```\n\n```yaml\nx: 1\n```\n\n```sh\n"+guideSkip+": two machines\necho skipped\n```\n\n```sh\necho two\necho three\n```\n"), 0o644)
	got := shellBlocks(t, md)
	if len(got) != 2 || got[0] != (guideBlock{3, "echo one\n"}) || got[1] != (guideBlock{16, "echo two\necho three\n"}) {
		t.Errorf("shellBlocks = %+v", got)
	}
}
