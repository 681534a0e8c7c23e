package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Peer is one voter: its Raft server ID and the address other nodes dial.
type Peer struct {
	ID   string
	Addr string
}

// Config says how to open a Node.
type Config struct {
	// ID is the node's Raft server ID; stable across restarts (the pod name
	// in a StatefulSet).
	ID string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// BindAddr is the host:port to listen on, e.g. 0.0.0.0:7000, or
	// 127.0.0.1:0 in tests.
	BindAddr string
	// AdvertiseAddr is the host:port other nodes dial, e.g. the pod's DNS
	// name coord-0.coord.ns.svc:7000. Empty means the bound address; a port
	// of 0 means the bound port.
	AdvertiseAddr string
	// Bootstrap lists the initial voters (an odd number: 1, 3 or 5). It is
	// used only if DataDir holds no Raft state yet, and must then include
	// this node; a Peer of this node with an empty Addr gets Addr(). Leave it
	// empty on a node that will join an existing cluster through AddVoter.
	Bootstrap []Peer
	// Logger receives hashicorp/raft's logs; slog.Default() when nil.
	Logger *slog.Logger
	// Tuning overrides raft.DefaultConfig() (tests shorten the timeouts).
	// LocalID and Logger are always set from this Config.
	Tuning *raft.Config
	// NoSync skips fsync in the log store: for tests only, a crash loses
	// acknowledged entries.
	NoSync bool
	// TLS, when set, wraps every Raft connection in TLS. It must carry this
	// node's certificate (presented when accepting and, for mutual TLS, when
	// dialling) and the roots that sign the peers' certificates; set
	// ClientAuth to tls.RequireAndVerifyClientCert for mutual TLS. The name
	// verified when dialling is the host of the peer's advertised address,
	// so certificates must name the pods' DNS names.
	TLS *tls.Config
	// NodeToken, when set, is the secret every coordinator node shares:
	// each Raft connection, in either direction, must prove it knows it
	// (a MAC over fresh nonces; the token itself is never sent), so that
	// nothing but a node can send Raft RPCs. With TLS as well, the
	// handshake runs inside the TLS session. Set TLS (with certificates
	// of the node role) or NodeToken, or both: without either the
	// transport takes packets from anyone who can reach BindAddr.
	NodeToken string
	// Listener, when set, is used instead of binding BindAddr (tests pass a
	// listener they opened on 127.0.0.1:0, so there is no port race). The
	// Node closes it.
	Listener net.Listener
}

// Tuning knobs that are not part of Config.
const (
	logCacheEntries   = 512
	snapshotsRetained = 3
	maxPool           = 3
	transportTimeout  = 10 * time.Second
)

// Node is one Raft voter: hashicorp/raft over raft-boltdb/v2 (behind a log
// cache), file snapshots and a TCP transport that advertises a stable name.
// Its methods are safe for concurrent use.
type Node struct {
	id           string
	raft         *raft.Raft
	trans        *raft.NetworkTransport
	store        *raftboltdb.BoltStore
	bootstrapped bool
	log          *slog.Logger
	closeOnce    sync.Once
	closeErr     error
	current      atomic.Bool // Current's latch (CaughtUpTo)
	fsm          *indexFSM
}

// indexFSM is the user's FSM, recording the index of the last entry it
// has applied: raft's AppliedIndex counts entries handed to the FSM
// goroutine, not applied by it. A Restore sets it to the snapshot's index
// (the newest in the store: the one being restored).
type indexFSM struct {
	raft.FSM
	snaps raft.SnapshotStore
	index atomic.Uint64
}

func (f *indexFSM) Apply(l *raft.Log) any {
	r := f.FSM.Apply(l)
	f.index.Store(l.Index)
	return r
}

func (f *indexFSM) Restore(rc io.ReadCloser) error {
	err := f.FSM.Restore(rc)
	if err == nil {
		if metas, lerr := f.snaps.List(); lerr == nil && len(metas) > 0 {
			f.index.Store(metas[0].Index)
		}
	}
	return err
}

// Open starts a node. On first start (no Raft state in DataDir) and with a
// non-empty Bootstrap it bootstraps the cluster; on later starts it recovers
// its log and latest snapshot into fsm and rejoins with the configuration
// held in its log, whatever Bootstrap says.
func Open(cfg Config, fsm raft.FSM) (*Node, error) {
	if cfg.ID == "" {
		return nil, errors.New("consensus: Config.ID is empty")
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("consensus: node %s: Config.DataDir is empty", cfg.ID)
	}
	if fsm == nil {
		return nil, fmt.Errorf("consensus: node %s: nil FSM", cfg.ID)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lg = lg.With("raft_id", cfg.ID)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("consensus: node %s: DataDir: %w", cfg.ID, err)
	}

	rc := raft.DefaultConfig()
	if cfg.Tuning != nil {
		c := *cfg.Tuning
		rc = &c
	}
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = newHCLog(lg)
	rc.LogOutput = nil

	n := &Node{id: cfg.ID, log: lg}
	ok := false
	defer func() {
		if !ok {
			if n.trans == nil && cfg.Listener != nil {
				cfg.Listener.Close()
			}
			n.closeResources()
		}
	}()

	dbPath := filepath.Join(cfg.DataDir, "raft.db")
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("consensus: node %s: open %s: %w", cfg.ID, dbPath, err)
	}
	n.store = store
	logs, err := raft.NewLogCache(logCacheEntries, store)
	if err != nil {
		return nil, fmt.Errorf("consensus: node %s: log cache: %w", cfg.ID, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetained, rc.Logger)
	if err != nil {
		return nil, fmt.Errorf("consensus: node %s: snapshot store in %s: %w", cfg.ID, cfg.DataDir, err)
	}

	var stream *streamLayer
	sec := security{tls: cfg.TLS, log: lg}
	if cfg.NodeToken != "" {
		sec.key = []byte(cfg.NodeToken)
	}
	if cfg.TLS == nil && cfg.NodeToken == "" {
		lg.Warn("the raft transport is unauthenticated: set TLS or NodeToken so that only nodes can reach it")
	}
	if cfg.Listener != nil {
		stream, err = wrapListener(cfg.Listener, cfg.AdvertiseAddr, sec)
	} else {
		stream, err = listen(cfg.BindAddr, cfg.AdvertiseAddr, sec)
	}
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.ID, err)
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: maxPool,
		Timeout: transportTimeout,
		Logger:  rc.Logger,
	})

	has, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return nil, fmt.Errorf("consensus: node %s: reading state in %s: %w", cfg.ID, cfg.DataDir, err)
	}
	if !has && len(cfg.Bootstrap) > 0 {
		conf, err := bootstrapConfiguration(cfg.ID, string(n.trans.LocalAddr()), cfg.Bootstrap)
		if err != nil {
			return nil, err
		}
		if err := raft.BootstrapCluster(rc, logs, store, snaps, n.trans, conf); err != nil {
			return nil, fmt.Errorf("consensus: node %s: bootstrap: %w", cfg.ID, err)
		}
		n.bootstrapped = true
		lg.Info("bootstrapped raft cluster", "voters", len(conf.Servers))
	}

	n.fsm = &indexFSM{FSM: fsm, snaps: snaps}
	r, err := raft.NewRaft(rc, n.fsm, logs, store, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("consensus: node %s: %w", cfg.ID, err)
	}
	n.raft = r
	ok = true
	return n, nil
}

// Current reports whether this node's state has been found current
// enough to serve reads (CaughtUpTo); once true it stays true (afterwards
// a follower lags the leader by a replication round trip, as any Raft
// read off the leader does). A restarted node replays its log only once a
// leader tells it the commit index, and a new voter starts empty; until
// then its state would show jobs missing or old.
func (n *Node) Current() bool { return n.current.Load() }

// CaughtUpTo reports whether the FSM has applied every entry up to index
// (the leader's commit index, asked for by a read: the read-index
// protocol of the Raft thesis §6.4), and latches Current when it has.
func (n *Node) CaughtUpTo(index uint64) bool {
	if n.current.Load() {
		return true
	}
	if index == 0 || n.raft.AppliedIndex() < index {
		return false // not all handed to the FSM yet
	}
	// Handed, but the FSM goroutine may still be applying: every command
	// after the last one it applied must be beyond index. (No-ops and
	// barriers never reach the FSM, so the FSM's own index can stay below
	// index for good.)
	for i := n.fsm.index.Load() + 1; i <= index; i++ {
		var l raft.Log
		if err := n.store.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				continue // compacted into the snapshot the FSM restored
			}
			return false
		}
		if l.Type == raft.LogCommand {
			return false
		}
	}
	n.current.Store(true)
	return true
}

// CommitIndex is the highest log index known to be committed (on the
// leader: the cluster's).
func (n *Node) CommitIndex() uint64 { return n.raft.CommitIndex() }

// bootstrapConfiguration checks the Bootstrap list and turns it into a Raft
// configuration. It is pure.
func bootstrapConfiguration(self, selfAddr string, peers []Peer) (raft.Configuration, error) {
	if len(peers)%2 == 0 {
		return raft.Configuration{}, fmt.Errorf("consensus: node %s: Bootstrap has %d voters; use an odd number (1, 3 or 5): an even count tolerates no more failures than one fewer", self, len(peers))
	}
	ids := map[string]bool{}
	addrs := map[string]string{}
	var conf raft.Configuration
	found := false
	for i, p := range peers {
		if p.ID == "" {
			return raft.Configuration{}, fmt.Errorf("consensus: node %s: Bootstrap[%d]: empty ID", self, i)
		}
		if ids[p.ID] {
			return raft.Configuration{}, fmt.Errorf("consensus: node %s: Bootstrap[%d]: duplicate ID %q", self, i, p.ID)
		}
		ids[p.ID] = true
		addr := p.Addr
		if p.ID == self {
			found = true
			if addr == "" {
				addr = selfAddr
			}
		}
		if addr == "" {
			return raft.Configuration{}, fmt.Errorf("consensus: node %s: Bootstrap[%d] (%s): empty Addr", self, i, p.ID)
		}
		if other, dup := addrs[addr]; dup {
			return raft.Configuration{}, fmt.Errorf("consensus: node %s: Bootstrap[%d] (%s): Addr %s is also %s's", self, i, p.ID, addr, other)
		}
		addrs[addr] = p.ID
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(addr)})
	}
	if !found {
		return raft.Configuration{}, fmt.Errorf("consensus: node %s: Bootstrap does not list this node (ID %s)", self, self)
	}
	return conf, nil
}

// Apply replicates cmd and returns what the FSM's Apply returned for it on
// this node. It fails with raft.ErrNotLeader on a follower (forward to
// Leader() instead), raft.ErrEnqueueTimeout when the entry could not be
// queued within timeout, and raft.ErrLeadershipLost when leadership was lost
// before the entry committed: then it may or may not have been applied, so
// commands must be idempotent. The timeout bounds enqueueing only; the wait
// for commit ends when the entry commits or leadership is lost.
func (n *Node) Apply(cmd []byte, timeout time.Duration) (any, error) {
	f := n.raft.Apply(cmd, timeout)
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Response(), nil
}

// ApplyContext is Apply with the whole wait (enqueue and commit) bounded
// by ctx. When ctx ends first it returns ctx.Err(), and, as with
// raft.ErrLeadershipLost, the entry may still commit later.
func (n *Node) ApplyContext(ctx context.Context, cmd []byte) (any, error) {
	timeout := time.Duration(0)
	if d, ok := ctx.Deadline(); ok {
		if timeout = time.Until(d); timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f := n.raft.Apply(cmd, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
		return f.Response(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Barrier returns once every entry committed before it has been applied to
// the FSM. A new leader calls it before acting on the FSM's state.
func (n *Node) Barrier(timeout time.Duration) error { return n.raft.Barrier(timeout).Error() }

// VerifyLeader checks with a quorum that this node is still the leader; use
// it before serving a linearizable read.
func (n *Node) VerifyLeader() error { return n.raft.VerifyLeader().Error() }

// IsLeader says whether this node currently thinks it leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's ID and advertised address, or empty
// strings when none is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// Term is the current Raft term as this node knows it.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// State is this node's Raft state: Leader, Follower, Candidate, Shutdown.
func (n *Node) State() string { return n.raft.State().String() }

// LeaderCh delivers true when this node gains leadership and false when it
// loses it. It holds only the latest transition: a slow reader may miss
// intermediate ones, so treat a value as "re-check IsLeader". Only one
// goroutine should read it.
func (n *Node) LeaderCh() <-chan bool { return n.raft.LeaderCh() }

// AddVoter adds (or re-addresses) a voter; only the leader can. The server
// joins as a non-voter and is promoted once it has caught up.
func (n *Node) AddVoter(id, addr string, timeout time.Duration) error {
	return n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout).Error()
}

// RemoveServer removes a server from the cluster; only the leader can. A
// leader that removes itself steps down.
func (n *Node) RemoveServer(id string, timeout time.Duration) error {
	return n.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error()
}

// TransferLeadership hands leadership to the most up-to-date follower, for a
// graceful shutdown of the leader.
func (n *Node) TransferLeadership() error { return n.raft.LeadershipTransfer().Error() }

// Servers returns the voters and non-voters of the latest configuration.
func (n *Node) Servers() ([]Peer, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []Peer
	for _, s := range f.Configuration().Servers {
		out = append(out, Peer{ID: string(s.ID), Addr: string(s.Address)})
	}
	return out, nil
}

// Snapshot takes a snapshot now and compacts the log behind it (keeping
// Tuning.TrailingLogs entries for slow followers). It returns
// raft.ErrNothingNewToSnapshot when the FSM has applied nothing yet.
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// Addr is the advertised Raft address, as it appears in the configuration.
func (n *Node) Addr() string { return string(n.trans.LocalAddr()) }

// ID is the node's server ID.
func (n *Node) ID() string { return n.id }

// Bootstrapped says whether this Open bootstrapped the cluster (true only on
// the first start of a node with a Bootstrap list).
func (n *Node) Bootstrapped() bool { return n.bootstrapped }

// AppliedIndex is the index of the last entry handed to the FSM; the FSM
// goroutine may not have applied it yet (Barrier waits for that).
func (n *Node) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// Raft exposes the underlying *raft.Raft for what this wrapper does not
// cover (observers, stats). Do not call Shutdown on it; use Close.
func (n *Node) Raft() *raft.Raft { return n.raft }

// Close shuts the node down (not gracefully: a leader does not hand over;
// call TransferLeadership first for that) and closes the transport and the
// stores. It is safe to call more than once.
func (n *Node) Close() error {
	var err error
	if n.raft != nil {
		err = n.raft.Shutdown().Error()
	}
	return errors.Join(err, n.closeResources())
}

func (n *Node) closeResources() error {
	n.closeOnce.Do(func() { n.closeErr = n.closeResourcesOnce() })
	return n.closeErr
}

func (n *Node) closeResourcesOnce() error {
	var errs []error
	if n.trans != nil {
		if err := n.trans.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Configuration returns the servers of the latest Raft configuration,
// with their suffrage.
func (n *Node) Configuration() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}
