#!/usr/bin/env bash
# Regenerates api/loompb from api/loom.proto with pinned plugin versions.
# Run from the repository root (make proto does).
set -euo pipefail
cd "$(dirname "$0")/.."
GOBIN_DIR="$(go env GOPATH)/bin"
want_go="v1.36.12"
want_grpc="1.5.1"
if ! "$GOBIN_DIR/protoc-gen-go" --version 2>/dev/null | grep -q "$want_go"; then
	go install "google.golang.org/protobuf/cmd/protoc-gen-go@$want_go"
fi
if ! "$GOBIN_DIR/protoc-gen-go-grpc" --version 2>/dev/null | grep -q "$want_grpc"; then
	go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v$want_grpc"
fi
command -v protoc >/dev/null || { echo "protoc not found (Debian: apt-get install protobuf-compiler)" >&2; exit 1; }
protoc -I api \
	--plugin=protoc-gen-go="$GOBIN_DIR/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$GOBIN_DIR/protoc-gen-go-grpc" \
	--go_out=api/loompb --go_opt=paths=source_relative \
	--go-grpc_out=api/loompb --go-grpc_opt=paths=source_relative \
	api/loom.proto
