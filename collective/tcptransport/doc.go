// Package tcptransport is a collective.Transport over plain TCP: one
// connection per (sender, receiver, channel), each message a collective
// header followed by the payload, written with one writev and read straight
// into the destination. It has no TLS, no flow control beyond TCP's and no
// multiplexing: it is the baseline the gRPC transport is measured against
// (`loom bench allreduce`), and it passes the same conformance suite.
package tcptransport
