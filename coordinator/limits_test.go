package coordinator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestOversizedInput replays issue 16's attack: 40 refused CancelJobs with
// 3 MiB request IDs grew every coordinator by 460 MB and raft.db by
// 130 MB. Now every oversized field is refused before Raft, naming the
// field: the log index, raft.db and the heap stay flat.
func TestOversizedInput(t *testing.T) {
	rc := newRaftCluster(t, 1)
	rc.leader(10 * time.Second)
	addr := rc.stacks[0].addr
	jobs := loompb.NewJobsClient(dial(t, addr, testToken))
	workers := loompb.NewWorkersClient(dial(t, addr, workerToken))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := jobs.SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: submitManifest("j")}); err != nil {
		t.Fatal(err)
	}
	node := rc.c.Nodes[0]
	// The node's own registration and the first scheduler ticks append to
	// the log after the submit; wait until it has been still for a second
	// (a fixed 300 ms was not enough on a loaded CI machine).
	for last, still, deadline := node.Raft().LastIndex(), time.Now(), time.Now().Add(20*time.Second); time.Since(still) < time.Second; {
		if time.Now().After(deadline) {
			t.Fatalf("the raft log kept growing for 20 s after the submit (index %d)", last)
		}
		time.Sleep(50 * time.Millisecond)
		if i := node.Raft().LastIndex(); i != last {
			last, still = i, time.Now()
		}
	}
	dbPath := filepath.Join(rc.c.Dir, rc.c.IDs[0], "raft.db")
	dbSize := func() int64 {
		st, err := os.Stat(dbPath)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	dedup := func() int {
		n := 0
		rc.stacks[0].fsm.Read(func(s *State) { n = len(s.Applied) })
		return n
	}
	idx0, db0, heap0, dd0 := node.Raft().LastIndex(), dbSize(), heapInUse(), dedup()

	big := strings.Repeat("x", 3<<20)
	objs := make([]*loompb.CheckpointObject, MaxCheckpointObjects+1)
	for i := range objs {
		objs[i] = &loompb.CheckpointObject{Path: fmt.Sprintf("s3://b/%d", i), Sha256: strings.Repeat("0", 64)}
	}
	cases := []struct {
		name  string
		call  func() error
		code  codes.Code
		field string
	}{
		{"3 MiB request_id", func() error {
			_, err := jobs.CancelJob(ctx, &loompb.CancelJobRequest{Job: "j", RequestId: big})
			return err
		}, codes.InvalidArgument, "request_id is"},
		{"3 MiB job name", func() error {
			_, err := jobs.CancelJob(ctx, &loompb.CancelJobRequest{Job: big})
			return err
		}, codes.InvalidArgument, "job is"},
		{"2 MiB manifest", func() error {
			_, err := jobs.SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: []byte(big[:2<<20])})
			return err
		}, codes.InvalidArgument, "manifest_yaml is 2 MiB; the limit is 1 MiB"},
		{"5 MiB message", func() error {
			_, err := jobs.SubmitJob(ctx, &loompb.SubmitJobRequest{ManifestYaml: []byte(strings.Repeat("x", 5<<20))})
			return err
		}, codes.ResourceExhausted, "larger than max"},
		{"1025 checkpoint objects", func() error {
			_, err := workers.CommitCheckpoint(ctx, &loompb.CommitCheckpointRequest{WorkerId: "w", Job: "j", Generation: 1, Step: 1, Objects: objs})
			return err
		}, codes.InvalidArgument, "objects has 1025 entries; the limit is 1024"},
		{"long object path", func() error {
			_, err := workers.CommitCheckpoint(ctx, &loompb.CommitCheckpointRequest{WorkerId: "w", Job: "j", Generation: 1, Step: 1,
				Objects: []*loompb.CheckpointObject{{Path: big[:2000]}}})
			return err
		}, codes.InvalidArgument, "objects[0].path is"},
		{"100 KiB failure text", func() error {
			_, err := workers.ReportFailure(ctx, &loompb.ReportFailureRequest{WorkerId: "w", Job: "j", Generation: 1, Error: big[:100<<10]})
			return err
		}, codes.InvalidArgument, "error is 100 KiB; the limit is 4 KiB"},
		{"a loss name of 1 KiB", func() error {
			_, err := workers.ReportProgress(ctx, &loompb.ReportProgressRequest{WorkerId: "w", Job: "j", Generation: 1, Losses: map[string]float64{big[:1024]: 1}})
			return err
		}, codes.InvalidArgument, "losses has a key of 1024 bytes"},
	}
	for round := 0; round < 40; round++ {
		for _, c := range cases {
			if round > 0 && c.code == codes.ResourceExhausted {
				continue // once is enough for the transport's own limit
			}
			err := c.call()
			if status.Code(err) != c.code || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("%s: %v, want %s containing %q", c.name, err, c.code, c.field)
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	if idx := node.Raft().LastIndex(); idx != idx0 {
		t.Errorf("raft log grew from index %d to %d while refusing oversized input", idx0, idx)
	}
	if db := dbSize(); db > db0+1<<20 {
		t.Errorf("raft.db grew from %d to %d bytes", db0, db)
	}
	if h := heapInUse(); h > heap0+32<<20 {
		t.Errorf("heap grew from %d MiB to %d MiB", heap0>>20, h>>20)
	}
	if dd := dedup(); dd != dd0 {
		t.Errorf("dedup table grew from %d to %d entries", dd0, dd)
	}
}

// The dedup table stays within its byte budget whatever the IDs' lengths,
// and evicts oldest first.
func TestDedupBoundedInBytes(t *testing.T) {
	s := NewState()
	id := func(i int) string { return fmt.Sprintf("%0128d", i) }
	n := 60000
	for i := 0; i < n; i++ {
		s.Apply(&Command{ID: id(i), Cancel: &Cancel{Job: strings.Repeat("j", 200)}})
	}
	if s.AppliedBytes > dedupBytes || len(s.Applied) > dedupWindow || len(s.Applied) != len(s.AppliedOrder) {
		t.Fatalf("dedup table: %d entries, %d bytes; want at most %d and %d", len(s.Applied), s.AppliedBytes, dedupWindow, dedupBytes)
	}
	if _, ok := s.Applied[id(n-1)]; !ok {
		t.Error("the newest ID was evicted")
	}
	if _, ok := s.Applied[id(0)]; ok {
		t.Error("the oldest ID is still held")
	}
	var sum int64
	for _, k := range s.AppliedOrder {
		sum += dedupCost(k, s.Applied[k])
	}
	if sum != s.AppliedBytes {
		t.Errorf("AppliedBytes = %d, entries add up to %d", s.AppliedBytes, sum)
	}
	// A snapshot restores the count.
	r, err := UnmarshalState(must(s.Marshal()))
	if err != nil || r.AppliedBytes != s.AppliedBytes {
		t.Errorf("restored AppliedBytes = %d (%v), want %d", r.AppliedBytes, err, s.AppliedBytes)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// One client may have MaxInflight writes in flight; the next is refused at
// once with RESOURCE_EXHAUSTED, another client is not affected, and nodes
// are exempt.
func TestPerClientWriteLimit(t *testing.T) {
	a := testAuth()
	a.MaxInflight = 3
	a.ServerOptions()
	release := make(chan struct{})
	block := func(ctx context.Context, req any) (any, error) { <-release; return nil, nil }
	callCtx := func(token, ip string) context.Context {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
		return peer.NewContext(ctx, &peer.Peer{Addr: fakeAddr(ip + ":1234")})
	}
	info := &grpc.UnaryServerInfo{FullMethod: loompb.Jobs_CancelJob_FullMethodName}
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Go(func() {
			_, _ = a.unary(callCtx(testToken, "10.0.0.1"), &loompb.CancelJobRequest{Job: "j"}, info, block)
		})
	}
	waitFor(t, 5*time.Second, "three writes in flight", func() bool {
		a.clients.mu.Lock()
		defer a.clients.mu.Unlock()
		return a.clients.n["w/user@10.0.0.1"] == 3
	})
	_, err := a.unary(callCtx(testToken, "10.0.0.1"), &loompb.CancelJobRequest{Job: "j"}, info, block)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("fourth write of one client = %v, want ResourceExhausted", err)
	}
	done := func(ctx context.Context, req any) (any, error) { return nil, nil }
	if _, err := a.unary(callCtx(testToken, "10.0.0.2"), &loompb.CancelJobRequest{Job: "j"}, info, done); err != nil {
		t.Errorf("a write of another client = %v, want accepted", err)
	}
	// Reads are not limited.
	if _, err := a.unary(callCtx(testToken, "10.0.0.1"), &loompb.GetJobRequest{Job: "j"}, &grpc.UnaryServerInfo{FullMethod: loompb.Jobs_GetJob_FullMethodName}, done); err != nil {
		t.Errorf("a read of the busy client = %v, want accepted", err)
	}
	close(release)
	wg.Wait()
	if _, err := a.unary(callCtx(testToken, "10.0.0.1"), &loompb.CancelJobRequest{Job: "j"}, info, done); err != nil {
		t.Errorf("a write after the others finished = %v, want accepted", err)
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }
