package coordinator

import (
	"context"

	"github.com/loomtrain/loom/coordinator/registry"
)

// WorkerWatcher is the watching half of registry.Registry, which
// registry.Etcd and registry.Fake implement (and pass the registry
// package's conformance suite).
type WorkerWatcher interface {
	Watch(ctx context.Context) ([]registry.Worker, <-chan registry.Event, error)
}

// FromRegistry adapts a coordinator/registry implementation to the
// coordinator's Registry.
func FromRegistry(w WorkerWatcher) Registry { return registryAdapter{w} }

type registryAdapter struct{ w WorkerWatcher }

func workerInfo(w registry.Worker) WorkerInfo {
	return WorkerInfo{ID: w.ID, Addr: w.Addr, Host: w.Host, GPUs: w.GPUs, Labels: w.Labels}
}

func (a registryAdapter) Watch(ctx context.Context) ([]WorkerInfo, <-chan RegistryEvent, error) {
	list, events, err := a.w.Watch(ctx)
	if err != nil {
		return nil, nil, err
	}
	out := make([]WorkerInfo, len(list))
	for i, w := range list {
		out[i] = workerInfo(w)
	}
	ch := make(chan RegistryEvent)
	go func() {
		defer close(ch)
		for ev := range events {
			select {
			case ch <- RegistryEvent{Up: ev.Type == registry.Up, Worker: workerInfo(ev.Worker)}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, ch, nil
}
