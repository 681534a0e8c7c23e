# Sourced by up.sh and down.sh: the pinned versions and the paths derived
# from them. The binaries are cached per (Kubernetes, kwok, Go) version, so
# a change of any of them builds afresh and a warm run builds nothing.
here="${here:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
LOOM_K8S_VERSION="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/tools/go.mod")"
LOOM_KWOK_VERSION=v0.8.0
LOOM_GO_VERSION="$(go env GOVERSION)"
LOOM_K8S_CACHE="${LOOM_K8S_CACHE:-$HOME/.cache/loom/k8s}"
LOOM_K8S_BIN="$LOOM_K8S_CACHE/kubernetes-$LOOM_K8S_VERSION-kwok-$LOOM_KWOK_VERSION-$LOOM_GO_VERSION"
LOOM_K8S_DIR="${LOOM_K8S_DIR:-${TMPDIR:-/tmp}/loom-k8s}"
LOOM_K8S_PORT="${LOOM_K8S_PORT:-6443}"
LOOM_K8S_PVS="${LOOM_K8S_PVS:-16}"
LOOM_ETCD="${LOOM_ETCD:-/usr/bin/etcd}"
