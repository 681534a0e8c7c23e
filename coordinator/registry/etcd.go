package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// revokeTimeout bounds the Revoke that Close sends.
const revokeTimeout = 5 * time.Second

// Register puts w under prefix+"/"+w.ID with a lease of ttl (rounded up to
// whole seconds, at least MinTTL) and keeps the lease alive until ctx ends
// or Close. Close revokes the lease (the key disappears at once); when ctx
// ends the keepalives stop and the key expires one TTL later. If the lease
// is lost (expired, revoked, or no keepalive answer for a whole TTL),
// Done() closes and Err() wraps ErrLeaseLost.
func Register(ctx context.Context, cli *clientv3.Client, prefix string, w Worker, ttl time.Duration) (*Registration, error) {
	if err := validate(prefix, w, ttl); err != nil {
		return nil, err
	}
	val, err := encode(w)
	if err != nil {
		return nil, fmt.Errorf("registry: worker %s: %w", w.ID, err)
	}
	key := Key(prefix, w.ID)
	secs := int64(math.Ceil(ttl.Seconds()))
	grant, err := cli.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("registry: worker %s: lease grant: %w", w.ID, err)
	}
	if _, err := cli.Put(ctx, key, string(val), clientv3.WithLease(grant.ID)); err != nil {
		revokeQuietly(cli, grant.ID)
		return nil, fmt.Errorf("registry: worker %s: put %s: %w", w.ID, key, err)
	}
	kaCtx, cancel := context.WithCancel(ctx)
	ka, err := cli.KeepAlive(kaCtx, grant.ID)
	if err != nil {
		cancel()
		revokeQuietly(cli, grant.ID)
		return nil, fmt.Errorf("registry: worker %s: keepalive: %w", w.ID, err)
	}
	r := newRegistration(w, int64(grant.ID))
	loopDone := make(chan struct{})
	r.halt = func() {
		cancel()
		<-loopDone
	}
	r.revoke = func() error {
		rctx, rcancel := context.WithTimeout(context.Background(), revokeTimeout)
		defer rcancel()
		if _, err := cli.Revoke(rctx, grant.ID); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("registry: worker %s: revoke lease %x: %w", w.ID, grant.ID, err)
		}
		return nil
	}
	go func() {
		defer close(loopDone)
		err := keepAlive(ctx, kaCtx, ka, time.Duration(secs)*time.Second)
		if err != nil {
			err = fmt.Errorf("worker %s, lease %x: %w", w.ID, grant.ID, err)
		}
		if r.finish(err) {
			cancel()
		}
	}()
	return r, nil
}

// keepAlive drains the keepalive channel until kaCtx ends (nil if we
// stopped it, ctx.Err() if the Register context ended) or the lease is lost
// (ErrLeaseLost). A lease
// whose keepalives got no answer for a whole ttl is taken as lost, since
// the client does not close the channel while etcd is unreachable.
func keepAlive(ctx, kaCtx context.Context, ka <-chan *clientv3.LeaseKeepAliveResponse, ttl time.Duration) error {
	last := time.Now()
	tick := time.NewTicker(ttl / 4)
	defer tick.Stop()
	for {
		select {
		case resp, ok := <-ka:
			if !ok {
				if kaCtx.Err() != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return nil
				}
				return fmt.Errorf("%w: keepalive stream ended (expired or revoked)", ErrLeaseLost)
			}
			if resp.TTL <= 0 {
				return fmt.Errorf("%w: expired", ErrLeaseLost)
			}
			last = time.Now()
		case <-tick.C:
			if since := time.Since(last); since > ttl {
				return fmt.Errorf("%w: no keepalive answer for %v (TTL %v)", ErrLeaseLost, since.Round(time.Millisecond), ttl)
			}
		case <-kaCtx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
	}
}

func revokeQuietly(cli *clientv3.Client, id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	_, _ = cli.Revoke(ctx, id)
}

// Watch returns the workers under prefix and then a stream of Up/Down
// events after that listing, until ctx ends (the channel is then closed).
// When the watch is cut (compaction beyond its revision, a lost leader, a
// reconnect that cannot resume), it lists the prefix again, sends the
// difference from what it had reported as events, and resumes from the new
// listing's revision, so no change is lost or reported twice. Values that do
// not decode as a Worker are skipped with a warning naming the key.
func Watch(ctx context.Context, cli *clientv3.Client, prefix string) ([]Worker, <-chan Event, error) {
	w := &watcher{cli: cli, prefix: strings.TrimRight(prefix, "/") + "/", log: slog.Default()}
	if w.prefix == "/" {
		return nil, nil, fmt.Errorf("registry: empty prefix")
	}
	known, rev, err := w.list(ctx)
	if err != nil {
		return nil, nil, err
	}
	w.known = known
	// The listing is copied out before the watcher goroutine starts: it
	// updates known from then on.
	first := sortedWorkers(known)
	out := make(chan Event, 64)
	go w.run(ctx, rev+1, out)
	return first, out, nil
}

type entry struct {
	w   Worker
	mod int64 // ModRevision of the key
}

type watcher struct {
	cli    *clientv3.Client
	prefix string
	log    *slog.Logger
	known  map[string]entry // what has been reported, by worker ID
}

func sortedWorkers(m map[string]entry) []Worker {
	out := make([]Worker, 0, len(m))
	for _, e := range m {
		out = append(out, e.w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// list reads every worker under the prefix and the store revision.
func (w *watcher) list(ctx context.Context) (map[string]entry, int64, error) {
	resp, err := w.cli.Get(ctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("registry: list %s: %w", w.prefix, err)
	}
	m := make(map[string]entry, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		wk, err := decode(string(kv.Key), kv.Value)
		if err != nil {
			w.log.Warn("registry: skipping entry", "err", err)
			continue
		}
		m[wk.ID] = entry{wk, kv.ModRevision}
	}
	return m, resp.Header.Revision, nil
}

// run watches from rev, re-listing whenever the watch breaks.
func (w *watcher) run(ctx context.Context, rev int64, out chan<- Event) {
	defer close(out)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		next, err := w.watchFrom(ctx, rev, out)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			rev = next
			continue
		}
		w.log.Warn("registry: watch broken, listing again", "prefix", w.prefix, "revision", rev, "err", err)
		for {
			next, err = w.resync(ctx, out)
			if err == nil {
				rev = next
				backoff = 50 * time.Millisecond
				break
			}
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("registry: re-list failed", "prefix", w.prefix, "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// watchFrom streams events from rev. It returns the revision to resume from
// with a nil error when the stream ended cleanly, or an error (such as
// ErrCompacted) after which the caller must re-list.
func (w *watcher) watchFrom(ctx context.Context, rev int64, out chan<- Event) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithPrevKV())
	for resp := range wch {
		if err := resp.Err(); err != nil {
			return rev, err
		}
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			id := key[len(w.prefix):]
			switch ev.Type {
			case clientv3.EventTypePut:
				wk, err := decode(key, ev.Kv.Value)
				if err != nil {
					w.log.Warn("registry: skipping entry", "err", err)
					break
				}
				w.known[id] = entry{wk, ev.Kv.ModRevision}
				if !send(ctx, out, Event{Up, wk}) {
					return rev, nil
				}
			case clientv3.EventTypeDelete:
				e, ok := w.known[id]
				if !ok {
					break // never reported (it did not decode)
				}
				delete(w.known, id)
				if !send(ctx, out, Event{Down, e.w}) {
					return rev, nil
				}
			}
			rev = ev.Kv.ModRevision + 1
		}
		if resp.Header.Revision >= rev {
			rev = resp.Header.Revision + 1
		}
	}
	if ctx.Err() != nil {
		return rev, nil
	}
	return rev, errors.New("watch channel closed")
}

// resync lists the prefix again and sends the difference from what was
// reported: Down for workers gone, Up for workers new or rewritten. It
// returns the revision to watch from.
func (w *watcher) resync(ctx context.Context, out chan<- Event) (int64, error) {
	now, rev, err := w.list(ctx)
	if err != nil {
		return 0, err
	}
	for _, e := range sortedWorkers(w.known) {
		if _, ok := now[e.ID]; !ok {
			delete(w.known, e.ID)
			if !send(ctx, out, Event{Down, e}) {
				return rev + 1, nil
			}
		}
	}
	for _, wk := range sortedWorkers(now) {
		old, ok := w.known[wk.ID]
		w.known[wk.ID] = now[wk.ID]
		if ok && old.mod == now[wk.ID].mod {
			continue
		}
		if !send(ctx, out, Event{Up, wk}) {
			return rev + 1, nil
		}
	}
	return rev + 1, nil
}

func send(ctx context.Context, out chan<- Event, e Event) bool {
	select {
	case out <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// Etcd is the Registry over an etcd client and a key prefix.
type Etcd struct {
	Client *clientv3.Client
	Prefix string
}

var _ Registry = Etcd{}

// Register is the package-level Register with e's client and prefix.
func (e Etcd) Register(ctx context.Context, w Worker, ttl time.Duration) (*Registration, error) {
	return Register(ctx, e.Client, e.Prefix, w, ttl)
}

// Watch is the package-level Watch with e's client and prefix.
func (e Etcd) Watch(ctx context.Context) ([]Worker, <-chan Event, error) {
	return Watch(ctx, e.Client, e.Prefix)
}
