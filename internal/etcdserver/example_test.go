package etcdserver_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/loomtrain/loom/internal/etcdserver"
)

func Example() {
	dir, err := os.MkdirTemp("", "etcd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	srv, err := etcdserver.Start(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	ctx := context.Background()
	if _, err := cli.Put(ctx, "/loom/hello", "world"); err != nil {
		log.Fatal(err)
	}
	resp, err := cli.Get(ctx, "/loom/hello")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s=%s\n", resp.Kvs[0].Key, resp.Kvs[0].Value)
	// Output: /loom/hello=world
}
