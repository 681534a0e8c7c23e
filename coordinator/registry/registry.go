package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"
)

// Worker is what a worker publishes about itself.
type Worker struct {
	ID      string            `json:"id"`
	Addr    string            `json:"addr"` // host:port of its collective (gRPC) endpoint
	Host    string            `json:"host"`
	GPUs    int               `json:"gpus"`
	Labels  map[string]string `json:"labels,omitempty"`
	Version string            `json:"version,omitempty"`
}

// Equal reports whether two Workers hold the same values.
func (w Worker) Equal(o Worker) bool {
	return w.ID == o.ID && w.Addr == o.Addr && w.Host == o.Host && w.GPUs == o.GPUs &&
		w.Version == o.Version && maps.Equal(w.Labels, o.Labels)
}

// EventType says whether a worker appeared (or changed) or went away.
type EventType int

const (
	// Up: the worker registered, or re-registered with new values or a new
	// lease.
	Up EventType = iota + 1
	// Down: the worker's key is gone: it closed its registration, or its
	// lease expired or was revoked.
	Down
)

func (t EventType) String() string {
	switch t {
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one change seen by Watch. For Down, Worker holds the last values
// the worker registered with.
type Event struct {
	Type   EventType
	Worker Worker
}

func (e Event) String() string { return e.Type.String() + " " + e.Worker.ID }

var (
	// ErrLeaseLost is the Err of a Registration whose lease expired or was
	// revoked while it was being kept alive, or which got no keepalive answer
	// for a whole TTL. The worker must stop taking work and register again.
	ErrLeaseLost = errors.New("registry: lease lost")
	// ErrOrphaned is the Err of a Registration after Orphan.
	ErrOrphaned = errors.New("registry: registration orphaned")
)

// MinTTL is the shortest lease: etcd counts TTLs in whole seconds.
const MinTTL = time.Second

// Registration is a worker's live entry in the registry. Its key stays while
// the lease is kept alive. Its methods are safe for concurrent use.
type Registration struct {
	worker  Worker
	leaseID int64
	done    chan struct{}

	mu     sync.Mutex
	err    error
	closed bool

	// Set by the implementation. halt ends the keepalives and waits for
	// them to stop (idempotent); revoke deletes the lease and its key now
	// (called at most once, after halt).
	halt      func()
	revoke    func() error
	closeOnce sync.Once
	closeErr  error
}

func newRegistration(w Worker, lease int64) *Registration {
	return &Registration{worker: w, leaseID: lease, done: make(chan struct{})}
}

// Worker is what was registered.
func (r *Registration) Worker() Worker { return r.worker }

// LeaseID is the etcd lease holding the key.
func (r *Registration) LeaseID() int64 { return r.leaseID }

// Done is closed when the registration stops being kept alive: after
// Close or Orphan, when the Register context ends, or when the lease is
// lost. Err then says which.
func (r *Registration) Done() <-chan struct{} { return r.done }

// Err is nil while the registration is alive and after Close; ErrLeaseLost
// (wrapped, with the worker and lease) if the lease was lost; the context's
// error if Register's context ended; ErrOrphaned after Orphan.
func (r *Registration) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// finish records why the registration ended and closes Done, once. It
// reports whether this call was the one that ended it.
func (r *Registration) finish(err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.closed = true
	r.err = err
	close(r.done)
	return true
}

// Close stops the keepalives and revokes the lease, so the key disappears
// at once and watchers see Down (also after Orphan or the end of the
// Register context; a lease already lost is not an error). Err stays what
// it was if the registration had already ended. Calling Close again does
// nothing.
func (r *Registration) Close() error {
	r.finish(nil)
	r.closeOnce.Do(func() {
		r.halt()
		r.closeErr = r.revoke()
	})
	return r.closeErr
}

// Orphan stops the keepalives without revoking the lease: the key expires
// one TTL later, as it does when the worker's process dies. Tests use it to
// play a crash.
func (r *Registration) Orphan() {
	r.finish(ErrOrphaned)
	r.halt()
}

// Key is where w is stored under prefix.
func Key(prefix, id string) string { return strings.TrimRight(prefix, "/") + "/" + id }

// validate checks what both implementations refuse.
func validate(prefix string, w Worker, ttl time.Duration) error {
	if strings.TrimRight(prefix, "/") == "" {
		return fmt.Errorf("registry: empty prefix")
	}
	if w.ID == "" {
		return fmt.Errorf("registry: worker with Addr %q has an empty ID", w.Addr)
	}
	if strings.ContainsAny(w.ID, "/ \t\n") {
		return fmt.Errorf("registry: worker ID %q contains '/' or white space", w.ID)
	}
	if ttl < MinTTL {
		return fmt.Errorf("registry: worker %s: TTL %v is under the minimum %v", w.ID, ttl, MinTTL)
	}
	if w.GPUs < 0 {
		return fmt.Errorf("registry: worker %s: GPUs = %d, want >= 0", w.ID, w.GPUs)
	}
	return nil
}

// encode and decode are the stored form of a Worker.
func encode(w Worker) ([]byte, error) { return json.Marshal(w) }

func decode(key string, b []byte) (Worker, error) {
	var w Worker
	if err := json.Unmarshal(b, &w); err != nil {
		return Worker{}, fmt.Errorf("registry: key %s: %w", key, err)
	}
	if id := key[strings.LastIndexByte(key, '/')+1:]; w.ID != id {
		return Worker{}, fmt.Errorf("registry: key %s holds worker ID %q", key, w.ID)
	}
	return w, nil
}

// Registry is the pair of operations the coordinator and the worker use,
// with the etcd implementation (Etcd) and an in-memory one (Fake) behind it.
// registrytest.RunConformance checks that an implementation behaves as documented on the
// package-level Register and Watch.
type Registry interface {
	Register(ctx context.Context, w Worker, ttl time.Duration) (*Registration, error)
	Watch(ctx context.Context) ([]Worker, <-chan Event, error)
}
