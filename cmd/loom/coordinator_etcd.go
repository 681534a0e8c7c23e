package main

import (
	"crypto/tls"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/loomtrain/loom/coordinator"
	"github.com/loomtrain/loom/coordinator/registry"
)

// newEtcdRegistry connects to etcd and returns the worker registry under
// prefix, and a function that closes the client.
func newEtcdRegistry(endpoints []string, prefix string, tlsConf *tls.Config) (coordinator.Registry, func(), error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, TLS: tlsConf})
	if err != nil {
		return nil, nil, fmt.Errorf("--etcd %v: %w", endpoints, err)
	}
	return coordinator.FromRegistry(registry.Etcd{Client: cli, Prefix: prefix}), func() { cli.Close() }, nil
}
