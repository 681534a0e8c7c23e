package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/coordinator/registry"
)

// etcdRegistry adapts coordinator/registry (workers under an etcd prefix,
// each with a lease) to the coordinator's Registry interface.
type etcdRegistry struct {
	cli    *clientv3.Client
	prefix string
}

func newEtcdRegistry(endpoints []string, prefix string, tlsConf *tls.Config) (coordinator.Registry, func(), error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, TLS: tlsConf})
	if err != nil {
		return nil, nil, fmt.Errorf("--etcd %v: %w", endpoints, err)
	}
	return &etcdRegistry{cli: cli, prefix: prefix}, func() { cli.Close() }, nil
}

func workerInfo(w registry.Worker) coordinator.WorkerInfo {
	return coordinator.WorkerInfo{ID: w.ID, Addr: w.Addr, Host: w.Host, GPUs: w.GPUs, Labels: w.Labels}
}

func (r *etcdRegistry) Watch(ctx context.Context) ([]coordinator.WorkerInfo, <-chan coordinator.RegistryEvent, error) {
	list, events, err := registry.Watch(ctx, r.cli, r.prefix)
	if err != nil {
		return nil, nil, err
	}
	out := make([]coordinator.WorkerInfo, len(list))
	for i, w := range list {
		out[i] = workerInfo(w)
	}
	ch := make(chan coordinator.RegistryEvent)
	go func() {
		defer close(ch)
		for ev := range events {
			select {
			case ch <- coordinator.RegistryEvent{Up: ev.Type == registry.Up, Worker: workerInfo(ev.Worker)}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, ch, nil
}
