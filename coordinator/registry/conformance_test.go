package registry_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/loomtrain/loom/coordinator/registry"
	"github.com/loomtrain/loom/coordinator/registry/registrytest"
	"github.com/loomtrain/loom/internal/etcdserver"
	"github.com/loomtrain/loom/internal/etcdserver/etcdservertest"
)

func TestFakeConformance(t *testing.T) {
	registrytest.RunConformance(t, func(t *testing.T) registrytest.Harness {
		clock := registry.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		f := registry.NewFake(clock)
		return registrytest.Harness{
			Registry: f,
			Elapse:   func(d time.Duration) { clock.Advance(d); f.Expire() },
			Revoke:   f.Revoke,
		}
	})
}

func newEtcdClient(t *testing.T, srv *etcdserver.Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("clientv3.New: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestEtcdConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("real etcd; -short")
	}
	registrytest.RunConformance(t, func(t *testing.T) registrytest.Harness {
		srv := etcdservertest.Start(t)
		cli := newEtcdClient(t, srv)
		admin := newEtcdClient(t, srv)
		return registrytest.Harness{
			Registry: registry.Etcd{Client: cli, Prefix: "/loom/workers"},
			Elapse:   time.Sleep,
			Revoke: func(r *registry.Registration) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if _, err := admin.Revoke(ctx, clientv3.LeaseID(r.LeaseID())); err != nil {
					t.Fatalf("revoking lease %x: %v", r.LeaseID(), err)
				}
			},
		}
	})
}
