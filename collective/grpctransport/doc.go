// Package grpctransport is the gRPC collective.Transport: each rank runs a
// gRPC server, and dials one connection per channel to every peer it sends
// to, each carrying one long-lived client stream (service
// loom.collective.v1.Ring, method Push) for the life of the transport.
//
// The throughput choices follow research/collectives.md §3 and §7:
//
//   - a raw encoding.CodecV2 ("loom-raw"): a small header followed by the
//     caller's float32 memory handed to gRPC without a copy; the receiver
//     copies the pooled frame buffers once, straight into the destination;
//   - large static flow-control windows on both sides, stream and connection
//     (which also turns off BDP estimation);
//   - without TLS, a connection wrapper below gRPC's HTTP/2 framer
//     (frameConn, Options.DataPath) that sends DATA frames in batches with
//     writev, their payloads by reference instead of copied into gRPC's
//     write buffer, and reads each frame's payload together with the next
//     frame's header with one readv straight into gRPC's frame buffer
//     instead of through gRPC's read buffer; DataPathBuffered keeps gRPC's
//     own 1 MiB read/write buffers (always used with TLS);
//   - several channels, each its own TCP connection (own loopy writer and
//     reader goroutines, so own core);
//   - optional mutual TLS (Options.ServerTLS and ClientTLS).
//
// Options.Codec = "proto" sends the same frames as google.protobuf.BytesValue
// through the default protobuf codec: the benchmark baseline that shows what
// the copies cost.
//
// Usage (every rank, with the same Addrs):
//
//	tr, err := grpctransport.New(grpctransport.Options{Rank: r, Addrs: addrs})
//	comm, err := collective.New(tr, collective.Config{Job: job, Generation: gen})
package grpctransport
