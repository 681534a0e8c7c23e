package s3server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/spf13/afero"
)

// Server is a running in-process S3 server.
type Server struct {
	// Endpoint is the base URL, e.g. "http://127.0.0.1:41234".
	Endpoint string
	// AccessKey and SecretKey are the credentials clients should use. The
	// server accepts any credentials; these exist so that clients are
	// configured as against a real store.
	AccessKey, SecretKey string

	backend gofakes3.Backend
	srv     *http.Server
	ln      net.Listener
	done    chan error
}

// Start serves the objects under dir (created if missing) on a free
// loopback port; dir == "" keeps them in memory. Stop it with Close.
func Start(dir string) (*Server, error) { return StartWithOptions(Options{Dir: dir}) }

// Options configure StartWithOptions. The zero value is Start("").
type Options struct {
	// Dir holds the objects (created if missing); "" keeps them in memory.
	Dir string
	// Addr is the host:port to listen on; "" means 127.0.0.1:0 (a free
	// loopback port).
	Addr string
	// AccessKey and SecretKey are what the server reports as its
	// credentials (DefaultAccessKey and DefaultSecretKey when empty). They
	// are not checked: see the package doc.
	AccessKey, SecretKey string
}

// The credentials a server reports when Options name none (the ones
// `loom dev` uses).
const (
	DefaultAccessKey = "loom-dev"
	DefaultSecretKey = "loom-dev-secret"
)

// StartWithOptions starts a server as o says; see Options.
func StartWithOptions(o Options) (*Server, error) {
	dir, addr := o.Dir, o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if o.AccessKey == "" {
		o.AccessKey = DefaultAccessKey
	}
	if o.SecretKey == "" {
		o.SecretKey = DefaultSecretKey
	}
	var backend gofakes3.Backend
	if dir == "" {
		backend = s3mem.New()
	} else {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("s3server: data dir %s: %w", dir, err)
		}
		b, err := s3afero.MultiBucket(afero.NewBasePathFs(afero.NewOsFs(), dir))
		if err != nil {
			return nil, fmt.Errorf("s3server: data dir %s: %w", dir, err)
		}
		backend = b
	}
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("s3server: listen on %s: %w", addr, err)
	}
	s := &Server{
		Endpoint:  "http://" + ln.Addr().String(),
		AccessKey: o.AccessKey,
		SecretKey: o.SecretKey,
		backend:   backend,
		srv:       &http.Server{Handler: faker.Server(), ReadHeaderTimeout: 30 * time.Second},
		ln:        ln,
		done:      make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Env returns the environment a Loom client of this server needs, as
// NAME=value lines: LOOM_S3_ENDPOINT and LOOM_S3_ACCESS_KEY, and
// LOOM_S3_SECRET_KEY when it is the default (a secret given to the server
// is the caller's already, and is not repeated).
func (s *Server) Env() []string {
	env := []string{"LOOM_S3_ENDPOINT=" + s.Endpoint, "LOOM_S3_ACCESS_KEY=" + s.AccessKey}
	if s.SecretKey == DefaultSecretKey {
		env = append(env, "LOOM_S3_SECRET_KEY="+s.SecretKey)
	}
	return env
}

// CreateBucket creates a bucket; creating one that exists is not an error.
func (s *Server) CreateBucket(name string) error {
	ok, err := s.backend.BucketExists(name)
	if err != nil {
		return fmt.Errorf("s3server: bucket %q: %w", name, err)
	}
	if ok {
		return nil
	}
	if err := s.backend.CreateBucket(name); err != nil {
		return fmt.Errorf("s3server: create bucket %q: %w", name, err)
	}
	return nil
}

// Close stops the server and waits for its goroutine to exit.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
