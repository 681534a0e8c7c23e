package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loomtrain/loom/coordinator/consensus"
	"github.com/loomtrain/loom/coordinator/consensus/consensustest"
	"github.com/loomtrain/loom/coordinator/consensus/localraft"
)

const wait = 10 * time.Second

func kv(c *localraft.Cluster, i int) *localraft.KV { return c.FSMs[i].(*localraft.KV) }

// applyN writes keys prefix0..prefix(n-1) through the leader and returns
// the index of the last one.
func applyN(t *testing.T, c *localraft.Cluster, prefix string, n int) map[string]string {
	t.Helper()
	want := map[string]string{}
	for i := range n {
		k, v := fmt.Sprintf("%s%03d", prefix, i), fmt.Sprint(i)
		if _, err := c.Apply(localraft.Set(k, v), wait); err != nil {
			t.Fatalf("Apply(set %s): %v", k, err)
		}
		want[k] = v
	}
	return want
}

// converge waits for a leader, runs a barrier on it and waits for every
// running node to reach the leader's applied index.
func converge(t *testing.T, c *localraft.Cluster) int {
	t.Helper()
	l, err := c.Converge(wait)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func checkState(t *testing.T, c *localraft.Cluster, want map[string]string) {
	t.Helper()
	for i, n := range c.Nodes {
		if n == nil {
			continue
		}
		if got := kv(c, i).Map(); !maps.Equal(got, want) {
			t.Errorf("%s holds %d keys, want %d (first difference: %s)", c.IDs[i], len(got), len(want), firstDiff(got, want))
		}
	}
}

func firstDiff(got, want map[string]string) string {
	keys := slices.Sorted(maps.Keys(want))
	for _, k := range keys {
		if g, ok := got[k]; !ok || g != want[k] {
			return fmt.Sprintf("%s = %q, want %q", k, g, want[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return fmt.Sprintf("extra key %s", k)
		}
	}
	return "none"
}

func TestThreeNodesAdvertiseNames(t *testing.T) {
	c := consensustest.StartCluster(t, 3, nil)
	l := converge(t, c)
	servers, err := c.Nodes[l].Servers()
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 3 {
		t.Fatalf("Servers() = %v, want 3", servers)
	}
	for i, s := range servers {
		if s.ID != c.IDs[i] || s.Addr != c.Addrs[i] || !strings.HasPrefix(s.Addr, "localhost:") {
			t.Errorf("Servers()[%d] = %+v, want {%s %s} (the advertised name, not an IP)", i, s, c.IDs[i], c.Addrs[i])
		}
	}
	// A follower learns the leader from its first AppendEntries, which may
	// come a heartbeat after the leader itself knows; wait for it.
	var id, addr string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if id, addr = c.Nodes[(l+1)%3].Leader(); id != "" {
			break
		}
	}
	if id != c.IDs[l] || addr != c.Addrs[l] {
		t.Errorf("follower's Leader() = %s, %s; want %s, %s", id, addr, c.IDs[l], c.Addrs[l])
	}
	if c.Nodes[l].Addr() != c.Addrs[l] {
		t.Errorf("Addr() = %s, want %s", c.Nodes[l].Addr(), c.Addrs[l])
	}
	for i, n := range c.Nodes {
		if !n.Bootstrapped() {
			t.Errorf("%s: Bootstrapped() = false on first start", c.IDs[i])
		}
	}
}

func TestApplyOnFollowerIsNotLeader(t *testing.T) {
	c := consensustest.StartCluster(t, 3, nil)
	l := converge(t, c)
	f := (l + 1) % 3
	_, err := c.Nodes[f].Apply(localraft.Set("k", "v"), time.Second)
	if !errors.Is(err, raft.ErrNotLeader) {
		t.Fatalf("Apply on follower %s = %v, want raft.ErrNotLeader", c.IDs[f], err)
	}
	resp, err := c.Nodes[l].Apply(localraft.Set("k", "v1"), time.Second)
	if err != nil || resp != "" {
		t.Fatalf("Apply(set k v1) on leader = %v, %v; want previous value \"\"", resp, err)
	}
	resp, err = c.Nodes[l].Apply(localraft.Set("k", "v2"), time.Second)
	if err != nil || resp != "v1" {
		t.Fatalf("Apply(set k v2) on leader = %v, %v; want previous value v1", resp, err)
	}
}

// Killing the leader elects a new one within 5 s, and no committed entry
// is lost.
func TestLeaderFailover(t *testing.T) {
	c := consensustest.StartCluster(t, 3, nil)
	want := applyN(t, c, "before", 50)
	old, err := c.Leader(wait)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Stop(old); err != nil {
		t.Fatalf("Stop(%s): %v", c.IDs[old], err)
	}
	l, err := c.Leader(5 * time.Second)
	if err != nil {
		t.Fatalf("no new leader within 5 s of killing %s: %v", c.IDs[old], err)
	}
	t.Logf("%s took over from %s in %v", c.IDs[l], c.IDs[old], time.Since(start))
	if l == old {
		t.Fatalf("leader %s is the stopped node", c.IDs[l])
	}
	for k, v := range applyN(t, c, "after", 20) {
		want[k] = v
	}
	converge(t, c)
	checkState(t, c, want)

	// The old leader comes back as a follower and catches up.
	if err := c.Restart(old); err != nil {
		t.Fatalf("Restart(%s): %v", c.IDs[old], err)
	}
	converge(t, c)
	checkState(t, c, want)
}

// Restarting all three nodes from their data dirs recovers the same state
// and configuration, without bootstrapping again.
func TestRestartAllFromDisk(t *testing.T) {
	c := consensustest.StartCluster(t, 3, nil)
	want := applyN(t, c, "k", 40)
	if _, err := c.Apply(localraft.Delete("k007"), wait); err != nil {
		t.Fatal(err)
	}
	delete(want, "k007")
	converge(t, c)
	for i := range c.Nodes {
		if err := c.Stop(i); err != nil {
			t.Fatalf("Stop(%s): %v", c.IDs[i], err)
		}
	}
	for i := range c.Nodes {
		if err := c.Restart(i); err != nil {
			t.Fatalf("Restart(%s): %v", c.IDs[i], err)
		}
		if c.Nodes[i].Bootstrapped() {
			t.Errorf("%s bootstrapped again on restart", c.IDs[i])
		}
	}
	l := converge(t, c)
	checkState(t, c, want)
	servers, err := c.Nodes[l].Servers()
	if err != nil || len(servers) != 3 {
		t.Fatalf("Servers() after restart = %v, %v; want the 3 original voters", servers, err)
	}
}

// A node reopened with a different Bootstrap list keeps the configuration in
// its log: bootstrap happens only on the first start.
func TestBootstrapOnlyOnFirstStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a")
	open := func(bootstrap []consensus.Peer) *consensus.Node {
		n, err := consensus.Open(consensus.Config{
			ID: "a", DataDir: dir, BindAddr: "127.0.0.1:0", Bootstrap: bootstrap,
			Tuning: localraft.FastTuning(), NoSync: true, Logger: slog.New(slog.DiscardHandler),
		}, localraft.NewKV())
		if err != nil {
			t.Fatalf("Open(a, bootstrap %v): %v", bootstrap, err)
		}
		return n
	}
	n := open([]consensus.Peer{{ID: "a"}})
	if !n.Bootstrapped() {
		t.Fatal("first Open did not bootstrap")
	}
	select {
	case v := <-n.LeaderCh():
		if !v {
			t.Fatal("LeaderCh delivered false on a single voter")
		}
	case <-time.After(wait):
		t.Fatal("single voter did not become leader")
	}
	if _, err := n.Apply(localraft.Set("x", "1"), wait); err != nil {
		t.Fatal(err)
	}
	first := n.Addr()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	n = open([]consensus.Peer{{ID: "a"}, {ID: "b", Addr: "b:1"}, {ID: "c", Addr: "c:1"}})
	defer n.Close()
	if n.Bootstrapped() {
		t.Fatal("reopen bootstrapped again")
	}
	servers, err := n.Servers()
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 1 || servers[0].ID != "a" || servers[0].Addr != first {
		t.Fatalf("Servers() after reopen = %v, want only [{a %s}] from the first bootstrap", servers, first)
	}
}

// Snapshot, then restart a follower whose log has been compacted: it must
// come back through Restore to the same state. A snapshot persisted and
// restored into a fresh FSM gives an equal state too.
func TestSnapshotRestore(t *testing.T) {
	c := consensustest.StartCluster(t, 3, nil)
	want := applyN(t, c, "s", 150) // > TrailingLogs (64), so the log is compacted
	l := converge(t, c)
	for i, n := range c.Nodes {
		if err := n.Snapshot(); err != nil {
			t.Fatalf("Snapshot on %s: %v", c.IDs[i], err)
		}
	}
	for k, v := range applyN(t, c, "t", 10) {
		want[k] = v
	}
	f := (l + 1) % 3
	if err := c.Stop(f); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	converge(t, c)
	checkState(t, c, want)

	// Direct round trip through the FSM's snapshot.
	snap, err := kv(c, l).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	fresh := localraft.NewKV()
	if err := fresh.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if got := fresh.Map(); !maps.Equal(got, want) {
		t.Errorf("restored KV differs: %s", firstDiff(got, want))
	}
}

// A fourth node joins through AddVoter (catching up from a snapshot), then a
// voter is removed; writes keep working throughout.
func TestJoinAndRemove(t *testing.T) {
	c := consensustest.StartCluster(t, 3, nil)
	want := applyN(t, c, "j", 100)
	l := converge(t, c)
	if err := c.Nodes[l].Snapshot(); err != nil {
		t.Fatal(err)
	}
	i, err := c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	if c.Nodes[i].Bootstrapped() {
		t.Fatal("a joining node bootstrapped")
	}
	if err := c.Nodes[l].AddVoter(c.IDs[i], c.Addrs[i], wait); err != nil {
		t.Fatalf("AddVoter(%s, %s): %v", c.IDs[i], c.Addrs[i], err)
	}
	for k, v := range applyN(t, c, "k", 5) {
		want[k] = v
	}
	l = converge(t, c)
	checkState(t, c, want)
	servers, err := c.Nodes[l].Servers()
	if err != nil || len(servers) != 4 {
		t.Fatalf("Servers() after AddVoter = %v, %v; want 4", servers, err)
	}

	// Remove a follower (not the new node).
	victim := -1
	for j := range 3 {
		if j != l {
			victim = j
			break
		}
	}
	if err := c.Nodes[l].RemoveServer(c.IDs[victim], wait); err != nil {
		t.Fatalf("RemoveServer(%s): %v", c.IDs[victim], err)
	}
	if err := c.Stop(victim); err != nil {
		t.Fatal(err)
	}
	for k, v := range applyN(t, c, "m", 5) {
		want[k] = v
	}
	l = converge(t, c)
	checkState(t, c, want)
	servers, err = c.Nodes[l].Servers()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range servers {
		ids = append(ids, s.ID)
	}
	if len(ids) != 3 || slices.Contains(ids, c.IDs[victim]) || !slices.Contains(ids, c.IDs[i]) {
		t.Fatalf("Servers() after RemoveServer(%s) = %v, want 3 without it and with %s", c.IDs[victim], ids, c.IDs[i])
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	buf    strings.Builder
	closed bool
}

func (s *memSink) Write(p []byte) (int, error) { return s.buf.Write(p) }
func (s *memSink) Close() error                { s.closed = true; return nil }
func (s *memSink) ID() string                  { return "mem" }
func (s *memSink) Cancel() error               { return nil }
func (s *memSink) reader() *nopCloser {
	return &nopCloser{strings.NewReader(s.buf.String())}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

// Five voters tolerate two failures: with the leader and one follower gone
// the other three elect a leader and keep every committed entry.
func TestFiveNodesLoseTwo(t *testing.T) {
	if testing.Short() {
		t.Skip("five nodes; -short")
	}
	c := consensustest.StartCluster(t, 5, nil)
	want := applyN(t, c, "five", 20)
	l := converge(t, c)
	if err := c.Stop(l); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop((l + 1) % 5); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Leader(5 * time.Second); err != nil {
		t.Fatalf("no leader among the 3 remaining voters within 5 s: %v", err)
	}
	for k, v := range applyN(t, c, "three", 10) {
		want[k] = v
	}
	converge(t, c)
	checkState(t, c, want)
}

func TestApplyContext(t *testing.T) {
	c := consensustest.StartCluster(t, 3, nil)
	l := converge(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := c.Nodes[l].ApplyContext(ctx, localraft.Set("a", "1")); err != nil {
		t.Fatalf("ApplyContext on the leader: %v", err)
	}
	resp, err := c.Nodes[l].ApplyContext(ctx, localraft.Set("a", "2"))
	if err != nil || resp != "1" {
		t.Fatalf("ApplyContext(set a 2) = %v, %v; want previous value 1", resp, err)
	}
	if _, err := c.Nodes[(l+1)%3].ApplyContext(ctx, localraft.Set("a", "3")); !errors.Is(err, raft.ErrNotLeader) {
		t.Fatalf("ApplyContext on a follower = %v, want ErrNotLeader", err)
	}
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if _, err := c.Nodes[l].ApplyContext(done, localraft.Set("a", "4")); !errors.Is(err, context.Canceled) {
		t.Fatalf("ApplyContext(cancelled ctx) = %v, want context.Canceled", err)
	}
	// With a majority gone nothing commits, and the context bounds the wait.
	c.Stop((l + 1) % 3)
	c.Stop((l + 2) % 3)
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if _, err := c.Nodes[l].ApplyContext(short, localraft.Set("a", "5")); err == nil {
		t.Fatal("ApplyContext without a quorum succeeded")
	}
}

// TestCurrentAfterRestart: a follower restarted after missing writes is
// caught up to the leader's commit index (the read index) only once its
// state holds every write committed before, so reads off it never show a
// job missing; then it stays Current.
func TestCurrentAfterRestart(t *testing.T) {
	c := consensustest.StartCluster(t, 3, nil)
	want := applyN(t, c, "before", 30)
	l, err := c.Leader(wait)
	if err != nil {
		t.Fatal(err)
	}
	f := (l + 1) % 3
	converge(t, c)
	catchUp := func(index uint64) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for !c.Nodes[f].CaughtUpTo(index) {
			if time.Now().After(deadline) {
				t.Fatalf("%s not caught up to index %d within %v", c.IDs[f], index, wait)
			}
			time.Sleep(time.Millisecond)
		}
	}
	catchUp(c.Nodes[l].CommitIndex())
	if !c.Nodes[f].Current() {
		t.Fatalf("%s: a caught-up follower is not Current", c.IDs[f])
	}
	if err := c.Stop(f); err != nil {
		t.Fatal(err)
	}
	for k, v := range applyN(t, c, "while-down", 30) {
		want[k] = v
	}
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	if c.Nodes[f].Current() {
		t.Fatalf("%s is Current right after its restart, before any read index", c.IDs[f])
	}
	index := c.Nodes[l].CommitIndex()
	catchUp(index)
	if got := kv(c, f).Map(); !maps.Equal(got, want) {
		t.Errorf("%s caught up to %d holding %d keys, want %d (first difference: %s)", c.IDs[f], index, len(got), len(want), firstDiff(got, want))
	}
	if !c.Nodes[f].Current() || !c.Nodes[f].CaughtUpTo(1) {
		t.Errorf("%s: Current does not stay latched", c.IDs[f])
	}
}
