package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/loomtrain/loom/internal/devcluster"
	"github.com/loomtrain/loom/internal/promtest"
	"github.com/loomtrain/loom/shard"
)

// server is a `loom etcd` or `loom s3` child process of a test.
type server struct {
	cmd     *exec.Cmd
	exports map[string]string // the export lines it printed
	out     *lockedBuffer     // everything it printed
	done    chan struct{}     // closed when the process has exited
	drained chan struct{}     // closed when all of its output is in out
}

// lockedBuffer is a bytes.Buffer that the draining goroutine writes while
// the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(s)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer runs `loom ARGS...` with env added and waits for its
// "serving" line, which follows the export lines.
func startServer(t *testing.T, env []string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(loomBinary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, exports: map[string]string{}, out: &lockedBuffer{}, done: make(chan struct{}), drained: make(chan struct{})}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	go func() { cmd.Wait(); pw.Close(); close(s.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.done
	})
	deadline := time.After(30 * time.Second)
	for serving := false; !serving; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("loom %s exited before serving:\n%s", strings.Join(args, " "), s.out)
			}
			s.out.WriteString(l + "\n")
			if kv, ok := strings.CutPrefix(l, "export "); ok {
				k, v, _ := strings.Cut(kv, "=")
				s.exports[k] = v
			}
			serving = strings.HasPrefix(l, args[0]+" serving at") || strings.HasPrefix(l, args[0]+" serving clients at")
		case <-deadline:
			t.Fatalf("loom %s printed no serving line in 30s:\n%s", strings.Join(args, " "), s.out)
		}
	}
	// Keep draining (the rest of the output is checked after stop).
	go func() {
		defer close(s.drained)
		for l := range lines {
			s.out.WriteString(l + "\n")
		}
	}()
	return s
}

// stop sends SIGTERM and checks the process exits 0 within 10s.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("no exit 10s after SIGTERM")
	}
	<-s.drained
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0:\n%s", code, s.out)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := devcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestEtcdCommand runs `loom etcd`, writes a key through the endpoint it
// exports, stops it with SIGTERM, and checks a restart on the same data
// dir still has the key.
func TestEtcdCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	dir := filepath.Join(t.TempDir(), "etcd")
	client, peer := freeAddr(t), freeAddr(t)
	args := []string{"etcd", "--data-dir", dir, "--client-addr", client, "--peer-addr", peer}
	s := startServer(t, nil, args...)
	if got, want := s.exports["LOOM_ETCD_ENDPOINTS"], "http://"+client; got != want {
		t.Fatalf("LOOM_ETCD_ENDPOINTS=%q, want %q", got, want)
	}
	kv := func(put bool) string {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.exports["LOOM_ETCD_ENDPOINTS"]}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if put {
			if _, err := cli.Put(ctx, "/loom/test", "kept"); err != nil {
				t.Fatal(err)
			}
		}
		r, err := cli.Get(ctx, "/loom/test")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) != 1 {
			return ""
		}
		return string(r.Kvs[0].Value)
	}
	if v := kv(true); v != "kept" {
		t.Fatalf("read back %q", v)
	}
	// It serves etcd's metrics on the client address; etcd's own names
	// fail promtool's naming lint, nothing else may.
	promtest.CheckMetrics(t, "loom etcd's /metrics", promtest.Scrape(t, s.exports["LOOM_ETCD_ENDPOINTS"]+"/metrics"), "etcd_")
	s.stop(t)
	if !strings.Contains(s.out.String(), "etcd stopping") {
		t.Errorf("no stop line:\n%s", s.out)
	}
	s = startServer(t, nil, args...)
	if v := kv(false); v != "kept" {
		t.Fatalf("after a restart on %s the key reads %q, want kept", dir, v)
	}
	s.stop(t)
}

// TestS3Command runs `loom s3` with credentials from the environment,
// checks the export lines (the secret not repeated), stores and reads an
// object through them, and checks the object survives a restart.
func TestS3Command(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	dir := filepath.Join(t.TempDir(), "s3")
	addr := freeAddr(t)
	args := []string{"s3", "--data-dir", dir, "--addr", addr, "--bucket", "loom", "--bucket", "other"}
	s := startServer(t, []string{"LOOM_S3_ACCESS_KEY=test-key", "LOOM_S3_SECRET_KEY=test-secret-xyz"}, args...)
	if got := s.exports["LOOM_S3_ENDPOINT"]; got != "http://"+addr {
		t.Errorf("LOOM_S3_ENDPOINT=%q, want http://%s", got, addr)
	}
	if got := s.exports["LOOM_S3_ACCESS_KEY"]; got != "test-key" {
		t.Errorf("LOOM_S3_ACCESS_KEY=%q, want the environment's test-key", got)
	}
	if strings.Contains(s.out.String(), "test-secret-xyz") {
		t.Errorf("loom s3 printed the secret it was given:\n%s", s.out)
	}
	ctx := context.Background()
	store := func() *shard.S3Store {
		st, err := shard.NewS3Store(shard.S3Config{Endpoint: s.exports["LOOM_S3_ENDPOINT"], Bucket: "loom", AccessKey: "test-key", SecretKey: "test-secret-xyz"})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if err := store().Put(ctx, "a/b.txt", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	s.stop(t)
	if _, err := os.Stat(filepath.Join(dir, "buckets", "other")); err != nil {
		t.Errorf("--bucket other: %v", err)
	}

	// Restarted with no credentials in the environment: loom dev's, all
	// three printed, and the object is still there.
	env := []string{"LOOM_S3_ACCESS_KEY=", "LOOM_S3_SECRET_KEY=", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="}
	s = startServer(t, env, args...)
	if s.exports["LOOM_S3_ACCESS_KEY"] != "loom-dev" || s.exports["LOOM_S3_SECRET_KEY"] != "loom-dev-secret" {
		t.Errorf("with no keys in the environment exports are %v, want loom dev's", s.exports)
	}
	b, err := store().GetRange(ctx, "a/b.txt", 0, 5)
	if err != nil {
		t.Fatalf("after a restart on %s: %v", dir, err)
	}
	if string(b) != "hello" {
		t.Errorf("read back %q", b)
	}
	s.stop(t)
}

// TestServerCommandsRefuseUnspecifiedAddr: the listen address is also the
// advertised one, so 0.0.0.0 is refused naming the flag.
func TestServerCommandsRefuseUnspecifiedAddr(t *testing.T) {
	for _, args := range [][]string{
		{"etcd", "--client-addr", "0.0.0.0:2379"},
		{"s3", "--addr", "0.0.0.0:9000"},
		{"s3", "--addr", "9000"},
	} {
		out, err := exec.Command(loomBinary, append(args, "--data-dir", t.TempDir())...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), args[1]) {
			t.Errorf("loom %s: err %v, output %q; want a refusal naming %s", strings.Join(args, " "), err, out, args[1])
		}
	}
}
