package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The Membership service lets admins list, add and remove Raft voters
// (`loom cluster members|add|remove`). It is defined here rather than in
// api/loom.proto: its messages are JSON documents (Member, AddVoterRequest,
// RemoveServerRequest) carried in google.protobuf.BytesValue, like the
// commands of Cluster.Apply.
const (
	membershipService  = "loom.v1.Membership"
	membersMethod      = "/" + membershipService + "/Members"
	addVoterMethod     = "/" + membershipService + "/AddVoter"
	removeServerMethod = "/" + membershipService + "/RemoveServer"
	// commitIndexMethod is the read index: a node that must check its
	// state is current asks the leader for its commit index.
	commitIndexMethod = "/" + membershipService + "/CommitIndex"
)

// Member is one server of the Raft configuration.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// APIAddr is the node's gRPC address, from the replicated node table
	// ("" until the node has registered it).
	APIAddr  string `json:"api_addr,omitempty"`
	Suffrage string `json:"suffrage"` // voter, nonvoter, staging
	Leader   bool   `json:"leader,omitempty"`
}

// AddVoterRequest adds (or re-addresses) a voter.
type AddVoterRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// Force skips the check that something answers at RaftAddr.
	Force bool `json:"force,omitempty"`
}

// RemoveServerRequest removes a server from the configuration.
type RemoveServerRequest struct {
	ID string `json:"id"`
}

// Membership is what the Membership service needs from the Raft node
// (consensus.Node has it).
type Membership interface {
	Voters
	RemoveServer(id string, timeout time.Duration) error
	Configuration() ([]raft.Server, error)
}

// MembershipClient calls the Membership service.
type MembershipClient struct{ cc grpc.ClientConnInterface }

// NewMembershipClient returns a client of the Membership service on cc.
func NewMembershipClient(cc grpc.ClientConnInterface) *MembershipClient {
	return &MembershipClient{cc: cc}
}

func (c *MembershipClient) call(ctx context.Context, method string, req, resp any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	out := &wrapperspb.BytesValue{}
	if err := c.cc.Invoke(ctx, method, wrapperspb.Bytes(b), out); err != nil {
		return err
	}
	if resp == nil {
		return nil
	}
	return json.Unmarshal(out.Value, resp)
}

// Members lists the Raft configuration as the node dialled sees it.
func (c *MembershipClient) Members(ctx context.Context) ([]Member, error) {
	var ms []Member
	err := c.call(ctx, membersMethod, struct{}{}, &ms)
	return ms, err
}

// AddVoter adds a voter (on the leader; a follower forwards it).
func (c *MembershipClient) AddVoter(ctx context.Context, req AddVoterRequest) error {
	return c.call(ctx, addVoterMethod, req, nil)
}

// RemoveServer removes a server (on the leader; a follower forwards it).
func (c *MembershipClient) RemoveServer(ctx context.Context, req RemoveServerRequest) error {
	return c.call(ctx, removeServerMethod, req, nil)
}

type membershipServer struct{ *Server }

func (s membershipServer) desc() *grpc.ServiceDesc {
	h := func(name string, fn func(context.Context, []byte) (any, error)) grpc.MethodDesc {
		full := "/" + membershipService + "/" + name
		return grpc.MethodDesc{MethodName: name, Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := &wrapperspb.BytesValue{}
			if err := dec(in); err != nil {
				return nil, err
			}
			run := func(ctx context.Context, req any) (any, error) {
				out, err := fn(ctx, req.(*wrapperspb.BytesValue).Value)
				if err != nil {
					return nil, err
				}
				b, err := json.Marshal(out)
				if err != nil {
					return nil, status.Error(codes.Internal, err.Error())
				}
				return wrapperspb.Bytes(b), nil
			}
			if ic == nil {
				return run(ctx, in)
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{Server: s, FullMethod: full}, run)
		}}
	}
	return &grpc.ServiceDesc{
		ServiceName: membershipService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			h("Members", s.members),
			h("AddVoter", s.addVoter),
			h("RemoveServer", s.removeServer),
			h("CommitIndex", s.commitIndex),
		},
		Metadata: "coordinator/membership.go",
	}
}

func (s membershipServer) raft() (Membership, error) {
	m, ok := s.cfg.Raft.(Membership)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this node's consensus cannot change membership")
	}
	return m, nil
}

func (s membershipServer) members(ctx context.Context, _ []byte) (any, error) {
	m, err := s.raft()
	if err != nil {
		return nil, err
	}
	conf, err := m.Configuration()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read the raft configuration: %v", err)
	}
	leader, _ := s.cfg.Raft.Leader()
	var nodes map[string]string
	s.cfg.FSM.Read(func(st *State) {
		nodes = make(map[string]string, len(st.Nodes))
		for k, v := range st.Nodes {
			nodes[k] = v
		}
	})
	out := make([]Member, 0, len(conf))
	for _, sv := range conf {
		out = append(out, Member{ID: string(sv.ID), RaftAddr: string(sv.Address), APIAddr: nodes[string(sv.ID)],
			Suffrage: suffrage(sv.Suffrage), Leader: string(sv.ID) == leader})
	}
	return out, nil
}

// CommitIndexResponse is the leader's answer to CommitIndex.
type CommitIndexResponse struct {
	Index uint64 `json:"index"`
}

func (s membershipServer) commitIndex(ctx context.Context, _ []byte) (any, error) {
	r, ok := s.cfg.Raft.(readIndexRaft)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this node's consensus has no read index")
	}
	if !s.cfg.Raft.IsLeader() {
		return nil, status.Errorf(codes.Unavailable, "coordinator %s is not the leader", s.cfg.NodeID)
	}
	return CommitIndexResponse{Index: r.CommitIndex()}, nil
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	}
	return "staging"
}

// probeTimeout bounds the check that a new voter's Raft address answers.
const probeTimeout = 3 * time.Second

func (s membershipServer) addVoter(ctx context.Context, b []byte) (any, error) {
	var req AddVoterRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "add voter: %v", err)
	}
	if req.ID == "" || req.RaftAddr == "" {
		return nil, status.Error(codes.InvalidArgument, "add voter needs an id and a raft address")
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "raft address %q: %v", req.RaftAddr, err)
	}
	m, err := s.raft()
	if err != nil {
		return nil, err
	}
	return struct{}{}, s.onLeader(ctx, addVoterMethod, b, func() error {
		if !req.Force {
			// A voter nobody runs costs the cluster a failure it could
			// otherwise survive: with 3 nodes and a dead fourth voter, one
			// more loss leaves no quorum.
			c, err := net.DialTimeout("tcp", req.RaftAddr, probeTimeout)
			if err != nil {
				return status.Errorf(codes.FailedPrecondition, "nothing answers at %s (%v); start the node first, or force it", req.RaftAddr, err)
			}
			c.Close()
		}
		if err := m.AddVoter(req.ID, req.RaftAddr, s.cfg.ApplyTimeout); err != nil {
			return err
		}
		s.log.Info("voter added", "id", req.ID, "raft_addr", req.RaftAddr, "by", callerName(ctx))
		return nil
	})
}

func (s membershipServer) removeServer(ctx context.Context, b []byte) (any, error) {
	var req RemoveServerRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "remove server: %v", err)
	}
	if req.ID == "" {
		return nil, status.Error(codes.InvalidArgument, "remove server needs an id")
	}
	m, err := s.raft()
	if err != nil {
		return nil, err
	}
	return struct{}{}, s.onLeader(ctx, removeServerMethod, b, func() error {
		conf, err := m.Configuration()
		if err != nil {
			return err
		}
		found, voters := false, 0
		for _, sv := range conf {
			if string(sv.ID) == req.ID {
				found = true
			}
			if sv.Suffrage == raft.Voter {
				voters++
			}
		}
		if !found {
			return status.Errorf(codes.NotFound, "no server %q in the raft configuration", req.ID)
		}
		if voters == 1 {
			return status.Errorf(codes.FailedPrecondition, "%q is the last voter", req.ID)
		}
		if err := m.RemoveServer(req.ID, s.cfg.ApplyTimeout); err != nil {
			return err
		}
		s.log.Info("server removed", "id", req.ID, "by", callerName(ctx))
		return nil
	})
}

func callerName(ctx context.Context) string {
	if id, ok := CallerIdentity(ctx); ok {
		return describe(id)
	}
	return "?"
}

// onLeader runs fn on the leader, or forwards the call (method, body) to
// the leader's API address, retrying across leader changes until
// ApplyTimeout.
func (s membershipServer) onLeader(ctx context.Context, method string, body []byte, fn func() error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
	defer cancel()
	var last error
	for {
		if s.cfg.Raft.IsLeader() {
			err := fn()
			if err == nil {
				return nil
			}
			if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
				return err
			}
			if !retryable(err) {
				return status.Errorf(codes.FailedPrecondition, "%v", err)
			}
			last = err
		} else if addr := s.leaderAPI(); addr != "" {
			cc, err := s.conn(addr)
			if err != nil {
				return err
			}
			out := &wrapperspb.BytesValue{}
			err = cc.Invoke(ctx, method, wrapperspb.Bytes(body), out)
			if err == nil || status.Code(err) != codes.Unavailable {
				return err
			}
			last = err
		} else {
			last = errors.New("no leader known")
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.Unavailable, "%s: no leader accepted it within %s (last error: %v)", shortMethod(method), s.cfg.ApplyTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
