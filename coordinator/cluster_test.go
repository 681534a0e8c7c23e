package coordinator

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/coordinator/consensus/localraft"
)

// stack is the coordinator around one Raft node of a localraft.Cluster.
type stack struct {
	fsm    *FSM
	srv    *Server
	node   *Node
	g      *grpc.Server
	addr   string
	cancel context.CancelFunc
	done   sync.WaitGroup
}

type raftCluster struct {
	t      *testing.T
	c      *localraft.Cluster
	stacks []*stack
}

func newRaftCluster(t *testing.T, n int) *raftCluster {
	t.Helper()
	c, err := localraft.NewCluster(t.TempDir(), n, func() raft.FSM { return NewFSM() }, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := &raftCluster{t: t, c: c, stacks: make([]*stack, n)}
	for i := range n {
		rc.start(i)
	}
	t.Cleanup(func() {
		for i := range rc.stacks {
			rc.stop(i)
		}
		c.Close()
	})
	return rc
}

// start runs the API server and node duties on Raft node i.
func (rc *raftCluster) start(i int) {
	rc.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		rc.t.Fatal(err)
	}
	s := &stack{fsm: rc.c.FSMs[i].(*FSM), addr: lis.Addr().String()}
	rn := rc.c.Nodes[i]
	s.srv = NewServer(ServerConfig{NodeID: rc.c.IDs[i], Raft: rn, FSM: s.fsm, ApplyTimeout: 10 * time.Second,
		ForwardDial: DialOptions(nodeToken, nil), ProgressFlush: 20 * time.Millisecond, Logger: quietLogger})
	s.g = grpc.NewServer(testAuth().ServerOptions()...)
	s.srv.Register(s.g)
	s.node, err = NewNode(NodeConfig{ID: rc.c.IDs[i], APIAddr: s.addr, Raft: rn, FSM: s.fsm, Server: s.srv,
		Tick: 50 * time.Millisecond, BarrierTimeout: 5 * time.Second, Logger: quietLogger})
	if err != nil {
		rc.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done.Add(2)
	go func() { defer s.done.Done(); _ = s.g.Serve(lis) }()
	go func() { defer s.done.Done(); s.node.Run(ctx) }()
	rc.stacks[i] = s
}

// stop kills node i: its API, duties and Raft node.
func (rc *raftCluster) stop(i int) {
	s := rc.stacks[i]
	if s == nil {
		return
	}
	s.cancel()
	s.g.Stop()
	s.done.Wait()
	if err := rc.c.Stop(i); err != nil {
		rc.t.Errorf("stop raft node %d: %v", i, err)
	}
	rc.stacks[i] = nil
}

func (rc *raftCluster) restart(i int) {
	rc.t.Helper()
	if err := rc.c.Restart(i); err != nil {
		rc.t.Fatal(err)
	}
	rc.start(i)
}

// leader waits for a node that runs the leader duties and returns its index.
func (rc *raftCluster) leader(timeout time.Duration) int {
	rc.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i, s := range rc.stacks {
			if s != nil && s.node.Leading() {
				return i
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	rc.t.Fatalf("no leader within %s", timeout)
	return -1
}

func (rc *raftCluster) state(i int) []byte {
	var b []byte
	rc.stacks[i].fsm.Read(func(s *State) { b, _ = s.Marshal() })
	return b
}

func submitManifest(name string) []byte {
	return []byte(fmt.Sprintf(`name: %s
recipe: lwm
model: {size: tiny}
datasets: [{name: books, uri: "s3://data/books"}]
global_batch: 8
stages: [{name: ctx32k, steps: 100}]
`, name))
}

// TestClusterFailoverRestartSnapshot is the 3-node test: kill the
// leader → a new leader within 5 s and no committed job lost; a retried
// write applies once; restart all three from disk → the same state;
// snapshot → restore gives an equal state.
func TestClusterFailoverRestartSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Raft cluster")
	}
	rc := newRaftCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lead := rc.leader(10 * time.Second)
	follower := (lead + 1) % 3
	// Wait until every API address is replicated so followers can forward.
	waitFor(t, 10*time.Second, "node addresses registered", func() bool {
		n := 0
		rc.stacks[follower].fsm.Read(func(s *State) { n = len(s.Nodes) })
		return n == 3
	})
	jobs := loompb.NewJobsClient(dial(t, rc.stacks[follower].addr, testToken))
	for i := range 3 {
		if _, err := jobs.SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: submitManifest(fmt.Sprintf("job-%d", i)), RequestId: fmt.Sprintf("req-%d", i)}); err != nil {
			t.Fatalf("SubmitJob job-%d via follower: %v", i, err)
		}
	}

	// Kill the leader.
	killed := time.Now()
	rc.stop(lead)
	newLead := rc.leader(5 * time.Second)
	failover := time.Since(killed)
	t.Logf("failover: node %d → node %d in %s", lead, newLead, failover)
	if failover > 5*time.Second {
		t.Errorf("new leader after %s, want within 5s", failover)
	}
	var names []string
	rc.stacks[newLead].fsm.Read(func(s *State) {
		for _, j := range s.SortedJobs() {
			names = append(names, j.Name)
		}
	})
	if fmt.Sprint(names) != "[job-0 job-1 job-2]" {
		t.Errorf("jobs on the new leader = %v, want [job-0 job-1 job-2]", names)
	}

	// A write retried (same request ID) after the failover applies once.
	other := 3 - lead - newLead
	jobs2 := loompb.NewJobsClient(dial(t, rc.stacks[other].addr, testToken))
	if _, err := jobs2.SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: submitManifest("job-1"), RequestId: "req-1"}); err != nil {
		t.Errorf("retried SubmitJob(job-1, req-1) = %v, want the first result (success)", err)
	}
	r, err := rc.stacks[newLead].srv.Apply(ctx, &Command{ID: "req-1"})
	if err != nil || !r.Dup {
		t.Errorf("Apply(id req-1) again = %+v, %v; want a duplicate", r, err)
	}
	var events int
	rc.stacks[newLead].fsm.Read(func(s *State) { events = len(s.Jobs["job-1"].Events) })
	if events != 1 {
		t.Errorf("job-1 has %d events after retries, want 1", events)
	}
	if _, err := jobs2.SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: submitManifest("job-3")}); err != nil {
		t.Fatalf("SubmitJob after failover: %v", err)
	}

	// Bring the old leader back; it catches up.
	rc.restart(lead)
	want := rc.state(newLead)
	waitFor(t, 10*time.Second, "restarted node to catch up", func() bool { return bytes.Equal(rc.state(lead), rc.state(newLead)) })

	// Snapshot on one node, then a fresh FSM restored from it is equal.
	if err := rc.c.Nodes[newLead].Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	snap, err := rc.stacks[newLead].fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	restored := NewFSM()
	if err := restored.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	var got []byte
	restored.Read(func(s *State) { got, _ = s.Marshal() })
	// (A restarted node may register its API address in between.)
	if cur := rc.state(newLead); !bytes.Equal(stripNodes(got), stripNodes(cur)) {
		t.Errorf("state restored from a snapshot differs:\n%s\nwant\n%s", got, cur)
	}

	// Restart all three from disk: same state everywhere.
	want = rc.state(newLead)
	for i := range 3 {
		rc.stop(i)
	}
	for i := range 3 {
		rc.restart(i)
	}
	rc.leader(10 * time.Second)
	for i := range 3 {
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d to replay to the pre-restart state", i), func() bool {
			return bytes.Equal(stripNodes(rc.state(i)), stripNodes(want))
		})
	}
}

// stripNodes drops the node-address table and the applied count, which
// change when nodes restart on new API ports.
func stripNodes(b []byte) []byte {
	s, err := UnmarshalState(b)
	if err != nil {
		return b
	}
	s.Nodes = nil
	s.Index = 0
	out, _ := s.Marshal()
	return out
}

type memSink struct {
	bytes.Buffer
	closed bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { m.closed = true; return nil }
func (m *memSink) reader() *readCloser {
	return &readCloser{bytes.NewReader(m.Bytes())}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// TestClusterJoin adds a fourth node through the Join RPC sent to a
// follower (forwarded to the leader); the new node then holds the jobs.
func TestClusterJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Raft cluster")
	}
	rc := newRaftCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lead := rc.leader(10 * time.Second)
	follower := (lead + 1) % 3
	waitFor(t, 10*time.Second, "node addresses registered", func() bool {
		n := 0
		rc.stacks[follower].fsm.Read(func(s *State) { n = len(s.Nodes) })
		return n == 3
	})
	cc := dial(t, rc.stacks[follower].addr, nodeToken)
	if _, err := loompb.NewJobsClient(dial(t, rc.stacks[follower].addr, testToken)).SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: submitManifest("before-join")}); err != nil {
		t.Fatal(err)
	}
	i, err := rc.c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	rc.stacks = append(rc.stacks, nil)
	rc.start(i)
	if _, err := loompb.NewClusterClient(cc).Join(ctx, &loompb.JoinRequest{NodeId: rc.c.IDs[i], RaftAddr: rc.c.Addrs[i]}); err != nil {
		t.Fatalf("Join via follower: %v", err)
	}
	servers, err := rc.c.Nodes[lead].Servers()
	if err != nil || len(servers) != 4 {
		t.Fatalf("Servers() after join = %v, %v; want 4", servers, err)
	}
	waitFor(t, 10*time.Second, "joined node to hold the job", func() bool {
		ok := false
		rc.stacks[i].fsm.Read(func(s *State) { ok = s.Jobs["before-join"] != nil })
		return ok
	})
	if _, err := loompb.NewClusterClient(cc).Join(ctx, &loompb.JoinRequest{NodeId: ""}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Join with no id = %v, want InvalidArgument", err)
	}
}
