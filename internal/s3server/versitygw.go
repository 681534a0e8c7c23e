package s3server

import (
	"bytes"
	"errors"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// VersityInstall is the command that installs the versitygw binary that
// StartVersity runs.
const VersityInstall = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// ErrNoVersity is returned by StartVersity when the binary is not installed.
var ErrNoVersity = errors.New("versitygw not found on PATH or in $(go env GOPATH)/bin; install it with: " + VersityInstall)

// FindVersity returns the path of the versitygw binary: from PATH, or from
// $GOPATH/bin.
func FindVersity() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		gopath = build.Default.GOPATH
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "versitygw")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", ErrNoVersity
}

// Versity is a versitygw process serving a POSIX directory: a real,
// separate S3 server that checks SigV4 signatures.
type Versity struct {
	Endpoint             string // base URL, http://127.0.0.1:PORT
	AccessKey, SecretKey string
	Dir                  string // bucket directories live here

	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	stderr   *lockedBuffer
	stopOnce sync.Once
}

// StartVersity starts versitygw on a free loopback port with its POSIX
// backend on dir (each bucket is a subdirectory; object metadata goes to a
// sidecar directory so no extended attributes are needed), and waits until it
// accepts connections. Stop it with Close.
func StartVersity(dir string) (*Versity, error) {
	bin, err := FindVersity()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	side := filepath.Join(dir, "meta")
	for _, d := range []string{data, side} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("versitygw dir: %w", err)
		}
	}
	var lastErr error
	for try := 0; try < 3; try++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		v := &Versity{
			Endpoint:  "http://127.0.0.1:" + strconv.Itoa(port),
			AccessKey: "loomtestaccess",
			SecretKey: "loomtestsecret0123456789",
			Dir:       data,
			done:      make(chan struct{}),
			stderr:    &lockedBuffer{},
		}
		v.cmd = exec.Command(bin, "--port", "127.0.0.1:"+strconv.Itoa(port), "posix", "--sidecar", side, data)
		v.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+v.AccessKey, "ROOT_SECRET_KEY="+v.SecretKey)
		v.cmd.Stdout = v.stderr
		v.cmd.Stderr = v.stderr
		if err := v.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", bin, err)
		}
		go func() { v.waitErr = v.cmd.Wait(); close(v.done) }()
		if err := v.waitReady(port, 20*time.Second); err != nil {
			v.Close()
			lastErr = err
			continue
		}
		return v, nil
	}
	return nil, lastErr
}

func (v *Versity) waitReady(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-v.done:
			return fmt.Errorf("versitygw exited: %v; output: %s", v.waitErr, v.stderr.String())
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("versitygw did not listen on port %d within %v; output: %s", port, timeout, v.stderr.String())
}

// CreateBucket creates a bucket by making its directory (the POSIX backend
// serves every directory under Dir as a bucket).
func (v *Versity) CreateBucket(name string) error {
	return os.MkdirAll(filepath.Join(v.Dir, name), 0o755)
}

// Close stops the process and waits for it.
func (v *Versity) Close() error {
	v.stopOnce.Do(func() {
		if v.cmd.Process != nil {
			_ = v.cmd.Process.Signal(os.Interrupt)
			select {
			case <-v.done:
			case <-time.After(5 * time.Second):
				_ = v.cmd.Process.Kill()
				<-v.done
			}
		}
	})
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
