package etcdserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// StartAttempts is how many times Start picks fresh ports when another
// process took a port between the probe and etcd's own bind.
const StartAttempts = 5

// Options tune Start. The zero value is what `loom dev` uses.
type Options struct {
	// Name is the member name; "loom" when empty.
	Name string
	// Logger receives etcd's log lines at warn level and above (see
	// LogLevel); slog.Default() when nil.
	Logger *slog.Logger
	// LogLevel is the lowest etcd level forwarded to Logger; the zero value
	// means warn.
	LogLevel slog.Level
	// NoFsync turns off fsync: for throwaway test servers only, a crash
	// loses acknowledged writes.
	NoFsync bool
	// ReadyTimeout bounds the wait for the member to elect itself and serve;
	// 30 s when zero.
	ReadyTimeout time.Duration
	// ClientAddr and PeerAddr, when both set (127.0.0.1:PORT), are used
	// instead of free ports, e.g. to restart a server where its clients
	// expect it. There is no retry if they are taken.
	ClientAddr, PeerAddr string
}

// Server is a running single-member etcd.
type Server struct {
	// Endpoints are the client URLs (http://127.0.0.1:PORT), ready for
	// clientv3.Config.Endpoints.
	Endpoints []string
	// PeerURL is the member's peer URL.
	PeerURL string
	// Dir is the data directory.
	Dir string
	// ClientAddr and PeerAddr are the bound host:ports; pass them in
	// Options to restart the server in the same place.
	ClientAddr, PeerAddr string

	etcd *embed.Etcd
	log  *slogCore
}

// Start runs a single-member etcd with its data under dir (created if
// missing; an existing data dir is reopened with its keys) and its client
// and peer URLs on free 127.0.0.1 ports. It returns once the member serves
// client requests.
func Start(dir string) (*Server, error) { return StartWithOptions(dir, Options{}) }

// StartWithOptions is Start with tuning; see Options.
func StartWithOptions(dir string, opt Options) (*Server, error) {
	if dir == "" {
		return nil, errors.New("etcdserver: empty data dir")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcdserver: data dir %s: %w", dir, err)
	}
	if (opt.ClientAddr == "") != (opt.PeerAddr == "") {
		return nil, fmt.Errorf("etcdserver: set both ClientAddr and PeerAddr or neither (got %q, %q)", opt.ClientAddr, opt.PeerAddr)
	}
	if opt.ClientAddr != "" {
		return startOnce(dir, opt, opt.ClientAddr, opt.PeerAddr)
	}
	var lastErr error
	for attempt := 0; attempt < StartAttempts; attempt++ {
		ports, err := pickPorts(2)
		if err != nil {
			return nil, fmt.Errorf("etcdserver: picking ports: %w", err)
		}
		s, err := startOnce(dir, opt, net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])))
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !isAddrInUse(err) {
			break
		}
	}
	return nil, lastErr
}

func startOnce(dir string, opt Options, clientAddr, peerAddr string) (*Server, error) {
	client := url.URL{Scheme: "http", Host: clientAddr}
	peer := url.URL{Scheme: "http", Host: peerAddr}

	cfg := embed.NewConfig()
	cfg.Name = opt.Name
	if cfg.Name == "" {
		cfg.Name = "loom"
	}
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.InitialClusterToken = "loom-" + cfg.Name
	// A single member needs no slack for network delays: a short tick makes
	// it elect itself within tens of milliseconds and lets leases as short
	// as one second be honoured (etcd's minimum TTL is 1.5 election
	// timeouts).
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.UnsafeNoFsync = opt.NoFsync
	// Keep the history of the last hour; watchers that fall further behind
	// get ErrCompacted and re-list.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	cfg.EnableGRPCGateway = false
	cfg.Metrics = "basic"

	lg := opt.Logger
	if lg == nil {
		lg = slog.Default()
	}
	min := zapcore.WarnLevel
	if opt.LogLevel != 0 {
		min = zapLevel(opt.LogLevel)
	}
	core := newSlogCore(lg, min)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(core))
	cfg.LogLevel = min.String()

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: start in %s: %w", dir, err)
	}
	timeout := opt.ReadyTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdserver: start in %s: %w", dir, err)
	case <-t.C:
		e.Close()
		return nil, fmt.Errorf("etcdserver: start in %s: not ready after %v", dir, timeout)
	}
	return &Server{
		Endpoints:  []string{client.String()},
		PeerURL:    peer.String(),
		ClientAddr: clientAddr,
		PeerAddr:   peerAddr,
		Dir:        dir,
		etcd:       e,
		log:        core,
	}, nil
}

// Env returns the environment a Loom coordinator or worker needs to reach
// this server, as NAME=value lines (LOOM_ETCD_ENDPOINTS).
func (s *Server) Env() []string {
	return []string{"LOOM_ETCD_ENDPOINTS=" + strings.Join(s.Endpoints, ",")}
}

// Close stops the server and waits for its goroutines to end. Clients should
// be closed first: open watch streams hold a graceful stop back for up to the
// request timeout. Close is safe to call more than once.
func (s *Server) Close() error {
	if s == nil || s.etcd == nil {
		return nil
	}
	e := s.etcd
	s.etcd = nil
	s.log.closing.Store(true)
	e.Close()
	// Err is closed once every serving goroutine has returned; an error
	// sent before that is the reason the server stopped.
	var first error
	for err := range e.Err() {
		if first == nil && err != nil && !isClosedErr(err) {
			first = err
		}
	}
	if first != nil {
		return fmt.Errorf("etcdserver: %s: %w", s.Dir, first)
	}
	return nil
}

// pickPorts is freePorts; tests replace it to simulate a lost race.
var pickPorts = freePorts

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago. All n listeners are open at once, so the ports differ.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "use of closed network connection") ||
		strings.Contains(err.Error(), "http: Server closed")
}

func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l < slog.LevelInfo:
		return zapcore.DebugLevel
	case l < slog.LevelWarn:
		return zapcore.InfoLevel
	case l < slog.LevelError:
		return zapcore.WarnLevel
	}
	return zapcore.ErrorLevel
}
