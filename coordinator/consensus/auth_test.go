package consensus_test

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loomtrain/loom/coordinator/consensus/localraft"
)

// plainStream is a raft.StreamLayer that dials without any handshake: a
// client that speaks hashicorp/raft's wire protocol but is not a node.
type plainStream struct{ net.Listener }

func (plainStream) Dial(a raft.ServerAddress, d time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(a), d)
}

// With a node token, the Raft transport refuses connections that do not
// prove it: TimeoutNow from a client without the token, or with another
// cluster's token, never forces an election. (Issue 16: four such packets
// forced four leader changes.)
func TestNodeTokenRefusesStrangers(t *testing.T) {
	c, err := localraft.NewClusterWithOptions(t.TempDir(), 3, localraft.ClusterOptions{NodeToken: "node-secret", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := applyN(t, c, "k", 10)
	l := converge(t, c)
	follower := (l + 1) % 3

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransport(plainStream{ln}, 1, 2*time.Second, nil)
	defer trans.Close()
	for i := 0; i < 4; i++ {
		var resp raft.TimeoutNowResponse
		err := trans.TimeoutNow(raft.ServerID(c.IDs[follower]), raft.ServerAddress(c.Addrs[follower]), &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(c.IDs[l]), Addr: []byte(c.Addrs[l])}}, &resp)
		if err == nil {
			t.Fatalf("TimeoutNow #%d from a client without the node token succeeded", i+1)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if now, err := c.Leader(wait); err != nil || now != l {
		t.Fatalf("leader after the stranger's TimeoutNow packets = %d (%v), want %d unchanged", now, err, l)
	}

	// A node of another cluster (another token) is refused too.
	c.NodeToken = "other-secret"
	i, err := c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Nodes[l].AddVoter(c.IDs[i], c.Addrs[i], wait); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	time.Sleep(time.Second)
	if n := c.FSMs[i].(*localraft.KV).Len(); n != 0 {
		t.Fatalf("node with another token holds %d keys, want 0", n)
	}
	if err := c.Nodes[l].RemoveServer(c.IDs[i], wait); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(i); err != nil {
		t.Fatal(err)
	}
	checkState(t, c, want)
}

// The control for TestNodeTokenRefusesStrangers: without a node token (or
// TLS) the same packet from the same client does force an election.
func TestNoNodeTokenTakesTimeoutNowFromAnyone(t *testing.T) {
	c, err := localraft.NewClusterWithOptions(t.TempDir(), 3, localraft.ClusterOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l := converge(t, c)
	follower := (l + 1) % 3
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransport(plainStream{ln}, 1, 2*time.Second, nil)
	defer trans.Close()
	before := c.Nodes[follower].Term()
	var resp raft.TimeoutNowResponse
	if err := trans.TimeoutNow(raft.ServerID(c.IDs[follower]), raft.ServerAddress(c.Addrs[follower]), &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(c.IDs[l]), Addr: []byte(c.Addrs[l])}}, &resp); err != nil {
		t.Fatalf("TimeoutNow on an unauthenticated transport: %v", err)
	}
	// TimeoutNow makes the follower a candidate at once, in a new term:
	// that is the election the packet forced, whether or not the follower
	// then wins it (on a loaded machine the old leader sometimes does).
	deadline := time.Now().Add(wait)
	for {
		if now, err := c.Leader(wait); err == nil && now == follower {
			return
		}
		if c.Nodes[follower].Term() > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the unauthenticated TimeoutNow started no election on %d (term still %d)", follower, before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
