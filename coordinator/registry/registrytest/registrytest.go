package registrytest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/loomtrain/loom/coordinator/registry"
)

// Harness is one Registry under test plus the two things the suite cannot
// do through the interface.
type Harness struct {
	Registry registry.Registry
	// Elapse lets d of registry time pass: for Fake, advance its
	// ManualClock and call Expire; for etcd, sleep.
	Elapse func(d time.Duration)
	// Revoke takes r's lease away behind its back (Fake.Revoke; for etcd a
	// Revoke from another client).
	Revoke func(r *registry.Registration)
}

// ConformanceTTL is the lease TTL the suite registers with.
const ConformanceTTL = 2 * time.Second

// eventTimeout bounds each wait for an event in real time. Lease expiry in
// etcd is checked every 500 ms, after the TTL.
const eventTimeout = 10 * time.Second

// RunConformance checks that the Registry made by newHarness (called once
// per subtest) behaves as Register and Watch document.
func RunConformance(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"InitialList", testInitialList},
		{"UpThenCloseDown", testUpThenCloseDown},
		{"ReRegister", testReRegister},
		{"ProcessDeathExpires", testProcessDeath},
		{"LostLease", testLostLease},
		{"RegisterContextEnds", testRegisterContextEnds},
		{"WatchContextEnds", testWatchContextEnds},
		{"RejectsBadInput", testRejectsBadInput},
		{"ManyWorkers", testManyWorkers},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t)) })
	}
}

func worker(id string) registry.Worker {
	return registry.Worker{ID: id, Addr: id + ".workers:7100", Host: "node-" + id, GPUs: 8,
		Labels: map[string]string{"zone": "a", "id": id}, Version: "v1.2.3"}
}

func mustRegister(t *testing.T, h Harness, ctx context.Context, w registry.Worker) *registry.Registration {
	t.Helper()
	r, err := h.Registry.Register(ctx, w, ConformanceTTL)
	if err != nil {
		t.Fatalf("Register(%s): %v", w.ID, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func watch(t *testing.T, h Harness) ([]registry.Worker, <-chan registry.Event) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ws, ch, err := h.Registry.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	return ws, ch
}

func list(t *testing.T, h Harness) []registry.Worker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ws, _, err := h.Registry.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch (to list): %v", err)
	}
	return ws
}

func next(t *testing.T, ch <-chan registry.Event) registry.Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("event channel closed early")
		}
		return e
	case <-time.After(eventTimeout):
		t.Fatalf("no event within %v", eventTimeout)
	}
	return registry.Event{}
}

func expect(t *testing.T, ch <-chan registry.Event, typ registry.EventType, w registry.Worker) {
	t.Helper()
	e := next(t, ch)
	if e.Type != typ || !e.Worker.Equal(w) {
		t.Fatalf("got event %v %+v, want %v %+v", e.Type, e.Worker, typ, w)
	}
}

func ids(ws []registry.Worker) string {
	s := "["
	for i, w := range ws {
		if i > 0 {
			s += " "
		}
		s += w.ID
	}
	return s + "]"
}

func waitDone(t *testing.T, r *registry.Registration) {
	t.Helper()
	select {
	case <-r.Done():
	case <-time.After(eventTimeout):
		t.Fatalf("Registration(%s).Done not closed within %v", r.Worker().ID, eventTimeout)
	}
}

func testInitialList(t *testing.T, h Harness) {
	ctx := context.Background()
	mustRegister(t, h, ctx, worker("b"))
	mustRegister(t, h, ctx, worker("a"))
	got, _ := watch(t, h)
	want := []registry.Worker{worker("a"), worker("b")}
	if len(got) != len(want) {
		t.Fatalf("Watch listed %s, want %s", ids(got), ids(want))
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("Watch listed [%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func testUpThenCloseDown(t *testing.T, h Harness) {
	got, ch := watch(t, h)
	if len(got) != 0 {
		t.Fatalf("Watch on an empty registry listed %s", ids(got))
	}
	r := mustRegister(t, h, context.Background(), worker("a"))
	expect(t, ch, registry.Up, worker("a"))
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	expect(t, ch, registry.Down, worker("a"))
	waitDone(t, r)
	if r.Err() != nil {
		t.Errorf("Err after Close = %v, want nil", r.Err())
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if l := list(t, h); len(l) != 0 {
		t.Errorf("after Close the registry lists %s, want []", ids(l))
	}
}

// A worker that restarts registers again under the same ID: watchers see Up
// with the new values, and closing the old registration does not delete the
// new key.
func testReRegister(t *testing.T, h Harness) {
	ctx := context.Background()
	old := mustRegister(t, h, ctx, worker("a"))
	_, ch := watch(t, h)
	w2 := worker("a")
	w2.Addr = "a.workers:7200"
	nw := mustRegister(t, h, ctx, w2)
	expect(t, ch, registry.Up, w2)
	if err := old.Close(); err != nil {
		t.Fatalf("Close(old): %v", err)
	}
	if l := list(t, h); len(l) != 1 || !l[0].Equal(w2) {
		t.Fatalf("after closing the old registration the registry lists %+v, want [%+v]", l, w2)
	}
	if err := nw.Close(); err != nil {
		t.Fatalf("Close(new): %v", err)
	}
	expect(t, ch, registry.Down, w2)
}

// The worker's process dies: keepalives stop, nothing is revoked. The key
// stays for part of the TTL, then watchers see Down within the TTL (plus
// etcd's 500 ms expiry check).
func testProcessDeath(t *testing.T, h Harness) {
	r := mustRegister(t, h, context.Background(), worker("a"))
	_, ch := watch(t, h)
	start := time.Now()
	r.Orphan()
	waitDone(t, r)
	if !errors.Is(r.Err(), registry.ErrOrphaned) {
		t.Errorf("Err after Orphan = %v, want registry.ErrOrphaned", r.Err())
	}
	h.Elapse(ConformanceTTL / 4)
	if l := list(t, h); len(l) != 1 {
		t.Fatalf("a quarter TTL after the worker died the registry lists %s, want [a]", ids(l))
	}
	h.Elapse(ConformanceTTL - ConformanceTTL/4)
	expect(t, ch, registry.Down, worker("a"))
	t.Logf("Down %v after the worker died (TTL %v)", time.Since(start), ConformanceTTL)
	if d, limit := time.Since(start), ConformanceTTL+2*time.Second; d > limit {
		t.Errorf("Down came %v after the worker died, want within TTL %v (+ slack, %v)", d, ConformanceTTL, limit)
	}
}

func testLostLease(t *testing.T, h Harness) {
	r := mustRegister(t, h, context.Background(), worker("a"))
	_, ch := watch(t, h)
	h.Revoke(r)
	expect(t, ch, registry.Down, worker("a"))
	waitDone(t, r)
	if !errors.Is(r.Err(), registry.ErrLeaseLost) {
		t.Errorf("Err after the lease was revoked = %v, want registry.ErrLeaseLost", r.Err())
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close after the lease was lost = %v, want nil", err)
	}
}

// When Register's context ends the keepalives stop but the key is not
// revoked (it expires later); Close still revokes it.
func testRegisterContextEnds(t *testing.T, h Harness) {
	ctx, cancel := context.WithCancel(context.Background())
	r := mustRegister(t, h, ctx, worker("a"))
	_, ch := watch(t, h)
	cancel()
	waitDone(t, r)
	if !errors.Is(r.Err(), context.Canceled) {
		t.Errorf("Err after the context ended = %v, want context.Canceled", r.Err())
	}
	if l := list(t, h); len(l) != 1 {
		t.Fatalf("right after the context ended the registry lists %s, want [a]", ids(l))
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	expect(t, ch, registry.Down, worker("a"))
}

func testWatchContextEnds(t *testing.T, h Harness) {
	ctx, cancel := context.WithCancel(context.Background())
	_, ch, err := h.Registry.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, h, context.Background(), worker("a"))
	cancel()
	deadline := time.After(eventTimeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("event channel still open %v after the Watch context ended", eventTimeout)
		}
	}
}

func testRejectsBadInput(t *testing.T, h Harness) {
	ok := worker("ok")
	bad := func(mod func(*registry.Worker)) registry.Worker { w := worker("x"); mod(&w); return w }
	tests := []struct {
		w   registry.Worker
		ttl time.Duration
	}{
		{bad(func(w *registry.Worker) { w.ID = "" }), ConformanceTTL},
		{bad(func(w *registry.Worker) { w.ID = "a/b" }), ConformanceTTL},
		{bad(func(w *registry.Worker) { w.ID = "a b" }), ConformanceTTL},
		{bad(func(w *registry.Worker) { w.GPUs = -1 }), ConformanceTTL},
		{ok, 500 * time.Millisecond},
		{ok, 0},
	}
	for _, tc := range tests {
		r, err := h.Registry.Register(context.Background(), tc.w, tc.ttl)
		if err == nil {
			r.Close()
			t.Errorf("Register(%+v, %v) succeeded, want an error", tc.w, tc.ttl)
		}
	}
	if l := list(t, h); len(l) != 0 {
		t.Errorf("after rejected registrations the registry lists %s", ids(l))
	}
}

// Each worker's events arrive in order: Up before Down, and all of them.
func testManyWorkers(t *testing.T, h Harness) {
	_, ch := watch(t, h)
	const n = 20
	var regs []*registry.Registration
	for i := range n {
		regs = append(regs, mustRegister(t, h, context.Background(), worker(fmt.Sprintf("w%02d", i))))
	}
	for _, r := range regs[:n/2] {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	up, down := map[string]bool{}, map[string]bool{}
	for range n + n/2 {
		e := next(t, ch)
		switch e.Type {
		case registry.Up:
			if up[e.Worker.ID] {
				t.Fatalf("second Up for %s", e.Worker.ID)
			}
			up[e.Worker.ID] = true
		case registry.Down:
			if !up[e.Worker.ID] || down[e.Worker.ID] {
				t.Fatalf("Down for %s without one Up before it", e.Worker.ID)
			}
			down[e.Worker.ID] = true
		}
	}
	if len(up) != n || len(down) != n/2 {
		t.Fatalf("saw %d Up and %d Down, want %d and %d", len(up), len(down), n, n/2)
	}
	if l := list(t, h); len(l) != n-n/2 {
		t.Fatalf("registry lists %d workers, want %d", len(l), n-n/2)
	}
}
