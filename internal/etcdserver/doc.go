// Package etcdserver runs a real, single-member etcd inside the current
// process (go.etcd.io/etcd/server/v3/embed). It backs `loom dev` and the tests
// of the coordinator and the worker, which need the genuine lease, watch and
// compaction behaviour of etcd rather than a model of it; a cluster deployment
// points at its own etcd instead.
//
// # Usage
//
//	srv, err := etcdserver.Start(dir) // data under dir, client and peer URLs on free 127.0.0.1 ports
//	if err != nil { ... }
//	defer srv.Close()
//	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints})
//
// Tests use etcdservertest.Start, which keeps the data in t.TempDir(), turns fsync
// off and closes the server when the test ends.
//
// # Ports
//
// embed takes URLs, not listeners, so a free port is found by binding
// 127.0.0.1:0 and closing the socket before etcd binds it again. Another
// process can take the port in between; Start then retries with fresh ports
// (up to StartAttempts times) when the failure is "address already in use".
//
// # Logging
//
// etcd logs through zap. Start bridges zap into log/slog (the Logger of
// Options, or slog.Default()) at warn level and above, tagged
// component=etcd, so an embedded etcd is quiet unless something is wrong.
package etcdserver
