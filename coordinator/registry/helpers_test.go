package registry

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/loomtrain/loom/internal/etcdserver"
)

// The helpers of this package's internal tests; registrytest has its own,
// since internal tests cannot import it (it imports registry).

const eventTimeout = 10 * time.Second

func worker(id string) Worker {
	return Worker{ID: id, Addr: id + ".workers:7100", Host: "node-" + id, GPUs: 8,
		Labels: map[string]string{"zone": "a", "id": id}, Version: "v1.2.3"}
}

func next(t *testing.T, ch <-chan Event) Event {
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
	return Event{}
}

func expect(t *testing.T, ch <-chan Event, typ EventType, w Worker) {
	t.Helper()
	e := next(t, ch)
	if e.Type != typ || !e.Worker.Equal(w) {
		t.Fatalf("got event %v %+v, want %v %+v", e.Type, e.Worker, typ, w)
	}
}

func ids(ws []Worker) string {
	s := "["
	for i, w := range ws {
		if i > 0 {
			s += " "
		}
		s += w.ID
	}
	return s + "]"
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
