# syntax=docker/dockerfile:1
#
# Loom's container image: the single `loom` binary, built static and run as a
# non-root user on a distroless base. The same image runs `loom coordinator`
# and `loom worker`; deploy/k8s passes the subcommand as the container args.
#
#   docker build -t loom:dev .                      # CPU image (the default target)
#   docker build --target cuda -t loom:cuda .       # worker image built with the cuda tag (no CUDA backend yet)
#
# See docs/deploy.md. cmd/loom/deploy_test.go checks the structure of this
# file (stages, CGO_ENABLED=0, non-root USER, EXPOSEd ports = the binary's
# default ports), because CI has no container engine to build it.

ARG GO_VERSION=1.26
ARG CUDA_VERSION=12.8.1

# ---- build: a static, CGO-free binary for the target platform --------------
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# .git is part of the context on purpose: the toolchain stamps the VCS
# revision into the binary, and `loom version` reports it.
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/loom ./cmd/loom

# ---- build-cuda: the same binary with the cgo CUDA kernels (build tag cuda) -
# (the tag selects kernels/' CUDA backend; without one it builds the CPU code)
# The Go toolchain for the target platform (cgo does not cross-compile here).
FROM golang:${GO_VERSION}-bookworm AS gotoolchain

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04 AS build-cuda
COPY --from=gotoolchain /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:/root/go/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -tags cuda -trimpath -ldflags="-s -w" -o /out/loom ./cmd/loom

# ---- cuda: GPU worker image (needs the NVIDIA container runtime on the node) -
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04 AS cuda
COPY --from=build-cuda /out/loom /loom
# 65532 is the uid/gid of distroless "nonroot"; the manifests run as it.
USER 65532:65532
# coordinator: Raft, gRPC API, HTTP (health, metrics); worker: collective gRPC, HTTP.
EXPOSE 7000 7001 7002 7300 7301
ENTRYPOINT ["/loom"]

# ---- the default target: static binary on distroless, non-root ------------
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/loom /loom
USER 65532:65532
# coordinator: Raft, gRPC API, HTTP (health, metrics); worker: collective gRPC, HTTP.
EXPOSE 7000 7001 7002 7300 7301
ENTRYPOINT ["/loom"]
