package grpctransport

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
)

// verifiedGRPC is the grpc-go release whose HTTP/2 framer and message
// buffer release frameConn's write side was checked against (see the
// frameConn doc comment: a DATA header is followed directly by its payload,
// and a message's buffers are released only after the frame that ends it).
const verifiedGRPC = "1.85."

// TestGRPCVersionVerified fails when google.golang.org/grpc moves to a
// release frameConn was not checked against: holding payloads by reference
// is only safe while grpc-go keeps that contract, and a break would corrupt
// tensors rather than fail loudly. After an upgrade, re-read grpc-go's
// internal/transport (framer.writeData, loopy's processData, the release of
// mem.BufferSlice after a message's last frame), rerun this package's tests
// (TestReusedSendBuffer and the frame-stream fuzzers), and update
// verifiedGRPC.
func TestGRPCVersionVerified(t *testing.T) {
	if !strings.HasPrefix(grpc.Version, verifiedGRPC) {
		t.Fatalf("google.golang.org/grpc is %s; frameConn's write side was verified against %sx only: re-verify its contract with grpc-go's framer (see the test's doc comment) and update verifiedGRPC", grpc.Version, verifiedGRPC)
	}
}
