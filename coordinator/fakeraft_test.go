package coordinator

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// fakeCluster replicates synchronously: the leader's Apply applies the
// command to every member's FSM in turn. It stands in for Raft in the
// server tests; the real Raft is exercised by the cluster tests.
type fakeCluster struct {
	mu      sync.Mutex
	leader  string
	members map[string]*fakeRaft
	index   uint64
}

type fakeRaft struct {
	c        *fakeCluster
	id       string
	fsm      *FSM
	leaderCh chan bool
}

func newFakeCluster() *fakeCluster { return &fakeCluster{members: map[string]*fakeRaft{}} }

func (c *fakeCluster) add(id string, fsm *FSM) *fakeRaft {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &fakeRaft{c: c, id: id, fsm: fsm, leaderCh: make(chan bool, 8)}
	c.members[id] = r
	return r
}

func (c *fakeCluster) setLeader(id string) {
	c.mu.Lock()
	old := c.leader
	c.leader = id
	c.mu.Unlock()
	if m := c.members[old]; m != nil && old != id {
		m.leaderCh <- false
	}
	if m := c.members[id]; m != nil {
		m.leaderCh <- true
	}
}

func (r *fakeRaft) Apply(cmd []byte, timeout time.Duration) (any, error) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.c.leader != r.id {
		return nil, raft.ErrNotLeader
	}
	r.c.index++
	l := &raft.Log{Index: r.c.index, Type: raft.LogCommand, Data: cmd}
	var resp any
	for id, m := range r.c.members {
		out := m.fsm.Apply(l)
		if id == r.id {
			resp = out
		}
	}
	return resp, nil
}

func (r *fakeRaft) Barrier(time.Duration) error { return nil }

func (r *fakeRaft) IsLeader() bool {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	return r.c.leader == r.id
}

func (r *fakeRaft) Leader() (string, string) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.c.leader == "" {
		return "", ""
	}
	return r.c.leader, "raft-" + r.c.leader
}

func (r *fakeRaft) LeaderCh() <-chan bool { return r.leaderCh }
