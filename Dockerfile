# syntax=docker/dockerfile:1
#
# Loom's container image: the single `loom` binary, built static and run as a
# non-root user on a distroless base. The same image runs `loom coordinator`
# and `loom worker`; deploy/k8s passes the subcommand as the container args.
#
#   docker build -t loom:dev .                      # CPU image (the default target)
#   docker build --target gpu -t loom:gpu .         # GPU worker image: the Vulkan backend and loader
#
# See docs/deploy.md. cmd/loom/deploy_test.go checks the structure of this
# file (stages, CGO_ENABLED=0, non-root USER, EXPOSEd ports = the binary's
# default ports), because CI has no container engine to build it.

ARG GO_VERSION=1.26

# ---- build: a static, CGO-free binary for the target platform --------------
# -tags novulkan leaves the Vulkan backend out: it dlopens libvulkan.so.1,
# which would make the binary dynamically linked (cmd/loom/vulkan.go).
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
    go build -tags novulkan -trimpath -ldflags="-s -w" -o /out/loom ./cmd/loom

# ---- build-gpu: the same binary with the Vulkan backend (no cgo: purego) ---
FROM build AS build-gpu
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/loom ./cmd/loom

# ---- gpu: GPU worker image (loom worker --device gpu) ----------------------
# The Vulkan loader; the GPU's ICD comes from the node: the NVIDIA container
# toolkit mounts the driver's Vulkan ICD when the graphics capability is
# asked for (AMD and Intel: mount /dev/dri and their Mesa ICD).
FROM debian:bookworm-slim AS gpu
RUN apt-get update && apt-get install -y --no-install-recommends libvulkan1 \
    && rm -rf /var/lib/apt/lists/*
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
COPY --from=build-gpu /out/loom /loom
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
