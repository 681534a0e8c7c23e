package localraft

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loomtrain/loom/coordinator/consensus"
)

// FastTuning returns Raft timeouts short enough for tests on loopback
// (failover in well under a second) yet long enough not to flap on two busy
// cores under the race detector. Automatic snapshots are pushed out of the
// way; tests take them with Node.Snapshot.
func FastTuning() *raft.Config {
	c := raft.DefaultConfig()
	c.HeartbeatTimeout = 200 * time.Millisecond
	c.ElectionTimeout = 200 * time.Millisecond
	c.LeaderLeaseTimeout = 150 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotInterval = time.Hour
	c.SnapshotThreshold = 1 << 20
	c.TrailingLogs = 64
	return c
}

// BenchTuning is hashicorp/raft's DefaultConfig (1 s heartbeat and
// election timeouts, snapshots every 8192 entries): what a measurement
// should run with, and steady enough not to lose leadership on a loaded
// machine in the middle of a timed run.
func BenchTuning() *raft.Config { return raft.DefaultConfig() }

// Cluster is a set of consensus.Nodes on 127.0.0.1 in this process, each
// with its own data dir under Dir, advertising "localhost:PORT" (a name, as
// a StatefulSet pod would, not an IP). Index i is stable: a stopped node
// keeps its ID, dir and port, and Restart brings it back from disk.
type Cluster struct {
	Dir    string
	IDs    []string
	Addrs  []string // advertised addresses
	Nodes  []*consensus.Node
	FSMs   []raft.FSM
	NewFSM func() raft.FSM
	Tuning *raft.Config
	Logger *slog.Logger
	Sync   bool        // fsync the log store
	TLS    *tls.Config // for nodes opened from now on
	// NodeToken is the node token of nodes opened from now on.
	NodeToken string
}

// NewCluster starts n nodes (an odd number) bootstrapped with the same
// n-voter configuration, with FastTuning and fsync off. newFSM makes a fresh
// FSM for each (re)started node; nil means NewKV. logger nil discards raft's
// logs.
func NewCluster(dir string, n int, newFSM func() raft.FSM, logger *slog.Logger) (*Cluster, error) {
	return NewClusterWithOptions(dir, n, ClusterOptions{NewFSM: newFSM, Logger: logger})
}

// ClusterOptions tune NewClusterWithOptions; zero fields take NewCluster's
// defaults.
type ClusterOptions struct {
	NewFSM func() raft.FSM
	Logger *slog.Logger
	Tuning *raft.Config // FastTuning() when nil
	Sync   bool         // fsync the log store (off by default: tests)
	TLS    *tls.Config  // Raft connections over TLS (see consensus.Config.TLS)
	// NodeToken authenticates Raft connections (consensus.Config.NodeToken).
	NodeToken string
}

// NewClusterWithOptions is NewCluster with options.
func NewClusterWithOptions(dir string, n int, opt ClusterOptions) (*Cluster, error) {
	if opt.NewFSM == nil {
		opt.NewFSM = func() raft.FSM { return NewKV() }
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Tuning == nil {
		opt.Tuning = FastTuning()
	}
	c := &Cluster{Dir: dir, NewFSM: opt.NewFSM, Tuning: opt.Tuning, Logger: opt.Logger, Sync: opt.Sync, TLS: opt.TLS, NodeToken: opt.NodeToken}
	lns := make([]net.Listener, n)
	var peers []consensus.Peer
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			return nil, err
		}
		lns[i] = ln
		id := "n" + strconv.Itoa(i)
		addr := "localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		c.IDs = append(c.IDs, id)
		c.Addrs = append(c.Addrs, addr)
		peers = append(peers, consensus.Peer{ID: id, Addr: addr})
	}
	c.Nodes = make([]*consensus.Node, n)
	c.FSMs = make([]raft.FSM, n)
	for i := range n {
		if err := c.open(i, lns[i], peers); err != nil {
			for _, l := range lns[i+1:] {
				l.Close()
			}
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) open(i int, ln net.Listener, bootstrap []consensus.Peer) error {
	if ln == nil {
		// Rebind the node's own port: the other nodes know it by it.
		_, port, _ := net.SplitHostPort(c.Addrs[i])
		var err error
		for try := 0; try < 50; try++ {
			if ln, err = net.Listen("tcp", "127.0.0.1:"+port); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("localraft: rebinding %s for %s: %w", c.Addrs[i], c.IDs[i], err)
		}
	}
	fsm := c.NewFSM()
	node, err := consensus.Open(consensus.Config{
		ID:            c.IDs[i],
		DataDir:       filepath.Join(c.Dir, c.IDs[i]),
		Listener:      ln,
		AdvertiseAddr: c.Addrs[i],
		Bootstrap:     bootstrap,
		Logger:        c.Logger,
		Tuning:        c.Tuning,
		NoSync:        !c.Sync,
		TLS:           c.TLS,
		NodeToken:     c.NodeToken,
	}, fsm)
	if err != nil {
		return err
	}
	c.Nodes[i], c.FSMs[i] = node, fsm
	return nil
}

// Stop closes node i (a crash, as far as the others can tell).
func (c *Cluster) Stop(i int) error {
	if c.Nodes[i] == nil {
		return nil
	}
	err := c.Nodes[i].Close()
	c.Nodes[i] = nil
	return err
}

// Restart reopens a stopped node i from its data dir with a fresh FSM, on
// its old port. The Bootstrap list is passed again, as a restarted pod
// would; Open must ignore it because state exists.
func (c *Cluster) Restart(i int) error {
	if c.Nodes[i] != nil {
		return fmt.Errorf("localraft: %s is running", c.IDs[i])
	}
	var peers []consensus.Peer
	for j := range c.IDs {
		peers = append(peers, consensus.Peer{ID: c.IDs[j], Addr: c.Addrs[j]})
	}
	if len(peers)%2 == 0 {
		peers = peers[:len(peers)-1]
	}
	return c.open(i, nil, peers)
}

// AddNode starts a new node with no state and no Bootstrap list, ready to be
// added by the leader's AddVoter; it returns its index.
func (c *Cluster) AddNode() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	i := len(c.IDs)
	c.IDs = append(c.IDs, "n"+strconv.Itoa(i))
	c.Addrs = append(c.Addrs, "localhost:"+strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	c.Nodes = append(c.Nodes, nil)
	c.FSMs = append(c.FSMs, nil)
	if err := c.open(i, ln, nil); err != nil {
		return 0, err
	}
	return i, nil
}

// Leader waits up to timeout for exactly one running node to lead and
// returns its index.
func (c *Cluster) Leader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		leader, count := -1, 0
		for i, n := range c.Nodes {
			if n != nil && n.IsLeader() {
				leader, count = i, count+1
			}
		}
		if count == 1 {
			return leader, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("localraft: %d leaders after %v", count, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Apply applies cmd through the current leader, retrying while leadership
// moves (ErrNotLeader, ErrLeadershipLost: commands must be idempotent).
func (c *Cluster) Apply(cmd []byte, timeout time.Duration) (any, error) {
	deadline := time.Now().Add(timeout)
	for {
		i, err := c.Leader(time.Until(deadline))
		if err != nil {
			return nil, err
		}
		resp, err := c.Nodes[i].Apply(cmd, time.Until(deadline))
		if err == nil || time.Now().After(deadline) || !retryable(err) {
			return resp, err
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress)
}

// IndexedFSM is an FSM that reports the index of the last log it applied.
type IndexedFSM interface {
	raft.FSM
	AppliedIndex() uint64
}

// applied is what node i's FSM holds: the FSM's own index when it reports
// one, else the node's (which may run ahead of the FSM goroutine).
func (c *Cluster) applied(i int) uint64 {
	if f, ok := c.FSMs[i].(IndexedFSM); ok {
		return f.AppliedIndex()
	}
	return c.Nodes[i].AppliedIndex()
}

// WaitApplied waits until every running node's FSM has applied index.
func (c *Cluster) WaitApplied(index uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		behind := ""
		for i, n := range c.Nodes {
			if n != nil && c.applied(i) < index {
				behind = fmt.Sprintf("%s at %d", c.IDs[i], c.applied(i))
				break
			}
		}
		if behind == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localraft: waiting for index %d: %s after %v", index, behind, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Converge waits for a leader, runs a Barrier on it (so its FSM has
// applied every committed entry) and then waits until every running node's
// FSM has caught up with the leader's. It returns the leader's index.
func (c *Cluster) Converge(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	l, err := c.Leader(timeout)
	if err != nil {
		return -1, err
	}
	if err := c.Nodes[l].Barrier(time.Until(deadline)); err != nil {
		return -1, fmt.Errorf("localraft: barrier on %s: %w", c.IDs[l], err)
	}
	return l, c.WaitApplied(c.applied(l), time.Until(deadline))
}

// Close stops every running node.
func (c *Cluster) Close() error {
	var errs []error
	for i := range c.Nodes {
		errs = append(errs, c.Stop(i))
	}
	return errors.Join(errs...)
}
