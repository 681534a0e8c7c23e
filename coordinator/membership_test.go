package coordinator

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
)

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func voters(t *testing.T, m *MembershipClient) []Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms, err := m.Members(ctx)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	return ms
}

// TestRemoveDeadVoterRestoresQuorum is issue 16's membership failure on
// three real Raft nodes: a voter added where nothing listens makes the
// cluster lose its leader at the next failure, and removing it (as admin,
// through a follower) restores the margin. Only admins may do either.
func TestRemoveDeadVoterRestoresQuorum(t *testing.T) {
	rc := newRaftCluster(t, 3)
	lead := rc.leader(10 * time.Second)
	via, other := (lead+1)%3, (lead+2)%3
	waitFor(t, 10*time.Second, "node addresses registered", func() bool {
		n := 0
		rc.stacks[via].fsm.Read(func(s *State) { n = len(s.Nodes) })
		return n == 3
	})
	admin := NewMembershipClient(dial(t, rc.stacks[via].addr, adminToken))
	ms := voters(t, admin)
	if len(ms) != 3 {
		t.Fatalf("Members = %+v, want 3", ms)
	}
	nLead := 0
	for _, m := range ms {
		if m.Suffrage != "voter" || m.APIAddr == "" {
			t.Errorf("member %+v: want a voter with its API address", m)
		}
		if m.Leader {
			nLead++
		}
	}
	if nLead != 1 {
		t.Errorf("Members marks %d leaders, want 1", nLead)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ghost := deadAddr(t)
	// Users and workers may not change membership.
	for _, tok := range []string{testToken, workerToken} {
		err := NewMembershipClient(dial(t, rc.stacks[via].addr, tok)).AddVoter(ctx, AddVoterRequest{ID: "ghost", RaftAddr: ghost, Force: true})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("AddVoter with a non-admin token = %v, want PermissionDenied", err)
		}
	}
	if err := admin.AddVoter(ctx, AddVoterRequest{ID: "ghost", RaftAddr: ghost}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "nothing answers") {
		t.Fatalf("AddVoter at a dead address = %v, want FailedPrecondition (nothing answers)", err)
	}
	if err := admin.AddVoter(ctx, AddVoterRequest{ID: "ghost", RaftAddr: ghost, Force: true}); err != nil {
		t.Fatalf("AddVoter --force: %v", err)
	}
	waitFor(t, 10*time.Second, "the ghost in the follower's configuration", func() bool {
		return len(voters(t, admin)) == 4
	})

	// With the ghost counted, one real failure leaves 2 of 4 voters: no
	// quorum, no writes, and no way to remove the ghost.
	rc.stop(other)
	submit := func(name string, d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		_, err := loompb.NewJobsClient(dial(t, rc.stacks[lead].addr, testToken)).SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: submitManifest(name)})
		return err
	}
	if err := submit("no-quorum", 3*time.Second); err == nil {
		t.Fatal("a submit with 2 of 4 voters alive succeeded")
	}
	rc.restart(other)
	lead = rc.leader(20 * time.Second)

	// Remove the ghost through a follower: three voters again, and a
	// failure leaves a quorum.
	via = (lead + 1) % 3
	other = (lead + 2) % 3
	admin = NewMembershipClient(dial(t, rc.stacks[via].addr, adminToken))
	if err := admin.RemoveServer(ctx, RemoveServerRequest{ID: "ghost"}); err != nil {
		t.Fatalf("RemoveServer(ghost) via a follower: %v", err)
	}
	// The follower answers Members from its own copy of the
	// configuration, which catches up with the leader's commit shortly.
	waitFor(t, 10*time.Second, "the ghost gone from the follower's configuration", func() bool {
		return len(voters(t, admin)) == 3
	})
	if err := admin.RemoveServer(ctx, RemoveServerRequest{ID: "ghost"}); status.Code(err) != codes.NotFound {
		t.Errorf("removing the ghost again = %v, want NotFound", err)
	}
	rc.stop(other)
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := submit("after-remove", 5*time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("submit after removing the dead voter and losing a follower: %v", err)
		}
		lead = rc.leader(10 * time.Second)
	}
}
