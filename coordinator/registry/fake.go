package registry

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// Clock is the time source of Fake.
type Clock interface{ Now() time.Time }

// ManualClock is a Clock that moves only when told to. The zero value
// starts at the zero time.
type ManualClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewManualClock returns a clock set to t.
func NewManualClock(t time.Time) *ManualClock { return &ManualClock{t: t} }

// Now implements Clock.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Fake is an in-memory Registry with etcd's semantics, for tests of the
// code that uses the registry. Leases are kept alive for as long as their
// Registration is (there is no keepalive traffic to lose); an orphaned
// lease, or one whose Register context ended, expires one TTL after that
// moment on the injected Clock, when Expire is called. Revoke plays a lease
// lost behind the worker's back.
type Fake struct {
	clock Clock

	mu       sync.Mutex
	nextID   int64
	leases   map[int64]*fakeLease
	workers  map[string]fakeEntry // by worker ID
	watchers map[*fakeWatcher]struct{}
}

type fakeLease struct {
	id      int64
	ttl     time.Duration
	expires time.Time // zero while kept alive
}

type fakeEntry struct {
	w     Worker
	lease int64
}

var _ Registry = (*Fake)(nil)

// NewFake returns an empty Fake reading time from clock (a *ManualClock in
// tests); nil means the wall clock. Either way leases expire only when
// Expire is called: after advancing a ManualClock, or periodically.
func NewFake(clock Clock) *Fake {
	if clock == nil {
		clock = wallClock{}
	}
	return &Fake{clock: clock, leases: map[int64]*fakeLease{}, workers: map[string]fakeEntry{}, watchers: map[*fakeWatcher]struct{}{}}
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Register implements Registry with the rules of the package-level Register.
func (f *Fake) Register(ctx context.Context, w Worker, ttl time.Duration) (*Registration, error) {
	if err := validate("fake", w, ttl); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("registry: worker %s: %w", w.ID, err)
	}
	w = cloneWorker(w)
	ttl = time.Duration(math.Ceil(ttl.Seconds())) * time.Second // etcd's whole seconds
	f.mu.Lock()
	f.nextID++
	l := &fakeLease{id: f.nextID, ttl: ttl}
	f.leases[l.id] = l
	f.workers[w.ID] = fakeEntry{w: w, lease: l.id}
	f.broadcastLocked(Event{Up, w})
	f.mu.Unlock()

	r := newRegistration(w, l.id)
	stopCtx := make(chan struct{})
	var once sync.Once
	ctxDone := make(chan struct{})
	r.halt = func() {
		once.Do(func() { close(stopCtx) })
		<-ctxDone
		f.orphan(l.id)
	}
	r.revoke = func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.dropLeaseLocked(l.id)
		return nil
	}
	go func() {
		defer close(ctxDone)
		select {
		case <-ctx.Done():
			if r.finish(ctx.Err()) {
				f.orphan(l.id)
			}
		case <-stopCtx:
		}
	}()
	return r, nil
}

// orphan starts the TTL countdown of a lease that is no longer kept alive.
func (f *Fake) orphan(id int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.leases[id]; ok && l.expires.IsZero() {
		l.expires = f.clock.Now().Add(l.ttl)
	}
}

// dropLeaseLocked deletes a lease and the keys it holds, sending Down.
func (f *Fake) dropLeaseLocked(id int64) {
	if _, ok := f.leases[id]; !ok {
		return
	}
	delete(f.leases, id)
	ids := make([]string, 0)
	for wid, e := range f.workers {
		if e.lease == id {
			ids = append(ids, wid)
		}
	}
	sort.Strings(ids)
	for _, wid := range ids {
		e := f.workers[wid]
		delete(f.workers, wid)
		f.broadcastLocked(Event{Down, e.w})
	}
}

// Expire deletes every lease that is not kept alive and whose TTL has run
// out at the clock's Now, with its keys (watchers see Down). Call it after
// advancing the clock.
func (f *Fake) Expire() {
	now := f.clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []int64
	for id, l := range f.leases {
		if !l.expires.IsZero() && !now.Before(l.expires) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		f.dropLeaseLocked(id)
	}
}

// Revoke deletes r's lease now, as an operator or etcd itself might: the
// key goes (watchers see Down) and r ends with ErrLeaseLost.
func (f *Fake) Revoke(r *Registration) {
	f.mu.Lock()
	f.dropLeaseLocked(r.leaseID)
	f.mu.Unlock()
	r.finish(fmt.Errorf("worker %s, lease %x: %w: revoked", r.worker.ID, r.leaseID, ErrLeaseLost))
}

// Workers returns the registered workers sorted by ID.
func (f *Fake) Workers() []Worker {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listLocked()
}

func (f *Fake) listLocked() []Worker {
	out := make([]Worker, 0, len(f.workers))
	for _, e := range f.workers {
		out = append(out, cloneWorker(e.w))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Watch implements Registry: the current workers, then every change, in
// order, until ctx ends. A slow reader does not block the Fake: events queue
// up for it.
func (f *Fake) Watch(ctx context.Context) ([]Worker, <-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	w := &fakeWatcher{wake: make(chan struct{}, 1)}
	f.mu.Lock()
	list := f.listLocked()
	f.watchers[w] = struct{}{}
	f.mu.Unlock()
	out := make(chan Event)
	go func() {
		defer close(out)
		defer func() {
			f.mu.Lock()
			delete(f.watchers, w)
			f.mu.Unlock()
		}()
		for {
			w.mu.Lock()
			q := w.queue
			w.queue = nil
			w.mu.Unlock()
			for _, e := range q {
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-w.wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return list, out, nil
}

type fakeWatcher struct {
	mu    sync.Mutex
	queue []Event
	wake  chan struct{}
}

func (f *Fake) broadcastLocked(e Event) {
	for w := range f.watchers {
		e := Event{e.Type, cloneWorker(e.Worker)}
		w.mu.Lock()
		w.queue = append(w.queue, e)
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func cloneWorker(w Worker) Worker {
	if w.Labels != nil {
		l := make(map[string]string, len(w.Labels))
		for k, v := range w.Labels {
			l[k] = v
		}
		w.Labels = l
	}
	return w
}
