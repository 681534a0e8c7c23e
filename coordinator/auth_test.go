package coordinator

import (
	"context"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/grpcauth"
	"github.com/loomtrain/loom/internal/grpcauth/authtest"
)

// requests holds a plausible request for every RPC of the authorisation
// table, and whether it is a server stream.
var requests = map[string]struct {
	req    proto.Message
	stream bool
}{
	loompb.Jobs_SubmitJob_FullMethodName:           {req: &loompb.SubmitJobRequest{ManifestYaml: []byte("name: x\n")}},
	loompb.Jobs_GetJob_FullMethodName:              {req: &loompb.GetJobRequest{Job: "j"}},
	loompb.Jobs_ListJobs_FullMethodName:            {req: &loompb.ListJobsRequest{}},
	loompb.Jobs_CancelJob_FullMethodName:           {req: &loompb.CancelJobRequest{Job: "j"}},
	loompb.Jobs_ResumeJob_FullMethodName:           {req: &loompb.ResumeJobRequest{Job: "j"}},
	loompb.Jobs_WatchJob_FullMethodName:            {req: &loompb.WatchJobRequest{Job: "j"}, stream: true},
	loompb.Jobs_GetMetrics_FullMethodName:          {req: &loompb.GetMetricsRequest{Job: "j"}},
	loompb.Workers_WatchAssignment_FullMethodName:  {req: &loompb.WatchAssignmentRequest{WorkerId: "w1"}, stream: true},
	loompb.Workers_ReportProgress_FullMethodName:   {req: &loompb.ReportProgressRequest{WorkerId: "w1", Job: "j", Generation: 1, Step: 1}},
	loompb.Workers_CommitCheckpoint_FullMethodName: {req: &loompb.CommitCheckpointRequest{WorkerId: "w1", Job: "j", Generation: 1, Step: 1}},
	loompb.Workers_ReportFailure_FullMethodName:    {req: &loompb.ReportFailureRequest{WorkerId: "w1", Job: "j", Generation: 1, Error: "x"}},
	loompb.Cluster_Apply_FullMethodName:            {req: &loompb.ApplyRequest{Command: []byte("not a command")}},
	loompb.Cluster_Join_FullMethodName:             {req: &loompb.JoinRequest{NodeId: "n9", RaftAddr: "127.0.0.1:1"}},
	membersMethod:                                  {req: wrapperspb.Bytes([]byte("{}"))},
	addVoterMethod:                                 {req: wrapperspb.Bytes([]byte(`{"id":"n9","raft_addr":"127.0.0.1:1"}`))},
	removeServerMethod:                             {req: wrapperspb.Bytes([]byte(`{"id":"n9"}`))},
	commitIndexMethod:                              {req: wrapperspb.Bytes([]byte(`{}`))},
}

// call invokes method on cc with req and returns the status code.
func call(ctx context.Context, cc *grpc.ClientConn, method string) codes.Code {
	r := requests[method]
	if !r.stream {
		return status.Code(cc.Invoke(ctx, method, r.req, &wrapperspb.BytesValue{}))
	}
	s, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return status.Code(err)
	}
	if err := s.SendMsg(r.req); err != nil {
		return status.Code(err)
	}
	if err := s.CloseSend(); err != nil {
		return status.Code(err)
	}
	return status.Code(s.RecvMsg(&loompb.Assignment{})) // the test reads only the status
}

// TestRolesAgainstEveryRPC is invariant 8 as a table: every role, proven
// by a token and by a certificate, and a caller with no credential, against
// every RPC the server answers. An allowed call may still fail (the job
// does not exist, the fake Raft cannot add voters) but never with
// Unauthenticated or PermissionDenied; a refused one fails with exactly
// that before its handler runs.
func TestRolesAgainstEveryRPC(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	srvCert, srvKey := issue(t, ca, "server", RoleNode)
	anonCert, anonKey := issue(t, ca, "anon", "")
	serverConf, err := TLSFiles{Cert: srvCert, Key: srvKey, CA: ca.Path}.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	auth := testAuth()
	auth.Certs = true
	c := newFakeCluster()
	fsm := NewFSM()
	r := c.add("n1", fsm)
	c.setLeader("n1")
	srv := NewServer(ServerConfig{NodeID: "n1", Raft: r, FSM: fsm, ApplyTimeout: time.Second, Logger: quietLogger})
	g := grpc.NewServer(append(auth.ServerOptions(), grpc.Creds(credentials.NewTLS(serverConf)))...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()

	tokens := map[Role]string{RoleUser: testToken, RoleWorker: workerToken, RoleNode: nodeToken, RoleAdmin: adminToken}
	type caller struct {
		name      string
		role      Role // "" = nobody
		cert, key string
		token     string
	}
	callers := []caller{{name: "no credential", cert: anonCert, key: anonKey}, {name: "wrong token", cert: anonCert, key: anonKey, token: "guess"}}
	for _, role := range grpcauth.Roles {
		cert, key := issue(t, ca, "cert-"+string(role), role)
		callers = append(callers,
			caller{name: string(role) + " token", role: role, cert: anonCert, key: anonKey, token: tokens[role]},
			caller{name: string(role) + " certificate", role: role, cert: cert, key: key})
	}
	methods := Methods()
	sort.Strings(methods)
	if len(methods) != len(requests) {
		t.Fatalf("the table has %d methods, the test %d: give every RPC a request here", len(methods), len(requests))
	}
	// Every service the server registers is in the table.
	for name, info := range g.GetServiceInfo() {
		for _, m := range info.Methods {
			if _, ok := rules["/"+name+"/"+m.Name]; !ok {
				t.Errorf("/%s/%s is served but not in the authorisation table", name, m.Name)
			}
		}
	}
	for _, cl := range callers {
		conf, err := TLSFiles{Cert: cl.cert, Key: cl.key, CA: ca.Path}.CoordinatorClientConfig(nil)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(lis.Addr().String(), DialOptions(cl.token, conf)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		for _, m := range methods {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			got := call(ctx, cc, m)
			cancel()
			var want string
			switch {
			case cl.role == "":
				want = "Unauthenticated"
			case Allowed(m, cl.role):
				want = "allowed"
			default:
				want = "PermissionDenied"
			}
			ok := got.String() == want || (want == "allowed" && got != codes.Unauthenticated && got != codes.PermissionDenied)
			if !ok {
				t.Errorf("%s → %s: %s, want %s", cl.name, shortMethod(m), got, want)
			}
		}
	}
}

// A worker certificate bound to an ID speaks only for that worker; a role
// with its own CA accepts only certificates of that CA.
func TestWorkerIDAndRoleCA(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	adminCA := newCA(t, dir, "admin-ca")
	srvCert, srvKey := issue(t, ca, "server", RoleNode)
	serverConf, err := TLSFiles{Cert: srvCert, Key: srvKey, CA: ca.Path}.ServerConfig(adminCA.Path)
	if err != nil {
		t.Fatal(err)
	}
	adminPool, err := LoadCAPool(adminCA.Path)
	if err != nil {
		t.Fatal(err)
	}
	auth := &Auth{Certs: true, RoleCAs: grpcauth.RolePools{RoleAdmin: adminPool}, Logger: quietLogger}
	c := newFakeCluster()
	fsm := NewFSM()
	c.setLeader("n1")
	srv := NewServer(ServerConfig{NodeID: "n1", Raft: c.add("n1", fsm), FSM: fsm, ApplyTimeout: time.Second, Logger: quietLogger})
	c.setLeader("n1")
	g := grpc.NewServer(append(auth.ServerOptions(), grpc.Creds(credentials.NewTLS(serverConf)))...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()
	dialCert := func(ca2 *authtest.CA, name string, role Role, id string) *grpc.ClientConn {
		l, err := ca2.Issue(name, role, id)
		if err != nil {
			t.Fatal(err)
		}
		conf, err := TLSFiles{Cert: l.Cert, Key: l.Key, CA: ca.Path}.CoordinatorClientConfig(nil)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(lis.Addr().String(), DialOptions("", conf)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w1 := loompb.NewWorkersClient(dialCert(ca, "w1", RoleWorker, "w1"))
	_, err = w1.ReportProgress(ctx, &loompb.ReportProgressRequest{WorkerId: "w2", Job: "j", Generation: 1})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `only for worker "w1"`) {
		t.Errorf("worker w1's certificate reporting for w2 = %v, want PermissionDenied", err)
	}
	if _, err := w1.ReportProgress(ctx, &loompb.ReportProgressRequest{WorkerId: "w1", Job: "j", Generation: 1}); err != nil {
		t.Errorf("worker w1's certificate reporting for itself = %v, want accepted", err)
	}
	st, err := w1.WatchAssignment(ctx, &loompb.WatchAssignmentRequest{WorkerId: "w2"})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("worker w1 watching w2's assignment = %v, want PermissionDenied", err)
	}
	// An admin certificate from the general CA does not prove admin.
	m := NewMembershipClient(dialCert(ca, "fake-admin", RoleAdmin, ""))
	if _, err := m.Members(ctx); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "not signed by the admin CA") {
		t.Errorf("admin certificate of the general CA = %v, want Unauthenticated naming the admin CA", err)
	}
	m = NewMembershipClient(dialCert(adminCA, "admin", RoleAdmin, ""))
	if _, err := m.Members(ctx); status.Code(err) != codes.Unimplemented {
		t.Errorf("admin certificate of the admin CA = %v, want past authorisation (Unimplemented on the fake raft)", err)
	}
}
