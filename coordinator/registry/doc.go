// Package registry keeps the list of live workers in etcd: each worker
// registers under a key prefix with a lease it keeps alive, and the
// coordinator's leader watches the prefix for Up and Down events.
//
// # Worker side
//
//	reg, err := registry.Register(ctx, cli, "/loom/workers", w, 10*time.Second)
//	...
//	select {
//	case <-reg.Done(): // lease lost (reg.Err() wraps ErrLeaseLost): stop work, register again
//	case <-shutdown:
//		reg.Close() // revokes: the coordinator sees Down at once
//	}
//
// If the worker's process dies, its keepalives stop and the key expires one
// TTL later (etcd checks expiry every 500 ms).
//
// # Coordinator side
//
//	workers, events, err := registry.Watch(ctx, cli, "/loom/workers")
//	for ev := range events { ... ev.Type == registry.Up / registry.Down ... }
//
// Watch re-lists and resumes by itself when its watch is cut (history
// compacted past its revision, lost etcd leader, reconnect), reporting the
// difference as events, so the consumer sees each change once.
//
// # Tests
//
// Fake is an in-memory Registry with the same semantics, its lease expiry
// driven by an injected Clock (ManualClock plus Fake.Expire). registrytest.RunConformance
// is the suite that both Fake and Etcd (against internal/etcdserver) pass;
// a new implementation should pass it too.
package registry
