#!/usr/bin/env bash
# up.sh: a local Kubernetes control plane for trying and testing deploy/k8s,
# with simulated nodes. Nothing here needs a container engine or network
# access beyond the Go module proxy:
#
#   etcd                      Debian's etcd-server (/usr/bin/etcd) on loopback
#   kube-apiserver            built from k8s.io/kubernetes at the version in tools/go.mod
#   kube-controller-manager   (StatefulSets, PV binding, endpoints, service accounts)
#   kube-scheduler
#   kwok                      sigs.k8s.io/kwok: plays the kubelet of fake nodes,
#                             reports their pods Running and Ready (no container runs)
#
# Usage:
#   deploy/k8s/controlplane/up.sh [--build-only]
#   export KUBECONFIG=$LOOM_K8S_DIR/kubeconfig   (up.sh prints it)
#   deploy/k8s/controlplane/down.sh
#
# Environment (all optional):
#   LOOM_K8S_DIR     state directory (certs, etcd data, logs, kubeconfig, pids);
#                    default ${TMPDIR:-/tmp}/loom-k8s
#   LOOM_K8S_CACHE   where the built binaries are kept, keyed by versions;
#                    default $HOME/.cache/loom/k8s
#   LOOM_K8S_PORT    the API server's port on 127.0.0.1 (default 6443); etcd
#                    uses LOOM_K8S_PORT+1 (clients) and +2 (peers)
#   LOOM_K8S_PVS     number of static 10 GiB PersistentVolumes (default 16)
#
# Nodes (deploy/k8s/controlplane/nodes.yaml): two CPU nodes (kwok-cpu-0/1)
# and two GPU nodes (kwok-gpu-0/1) offering nvidia.com/gpu and tainted
# nvidia.com/gpu:NoSchedule, as the NVIDIA GPU operator does.
#
# A first run builds the binaries (docs/deploy.md gives the time and memory
# it took); later runs reuse them from LOOM_K8S_CACHE.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
. "$here/env.sh"

build() {
  mkdir -p "$LOOM_K8S_BIN"
  local k8s_missing=0 b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$LOOM_K8S_BIN/$b" ] || k8s_missing=1
  done
  if [ "$k8s_missing" = 1 ]; then
    echo "up.sh: building Kubernetes $LOOM_K8S_VERSION into $LOOM_K8S_BIN (one go build: the four commands share their compilation)" >&2
    # Into a temporary directory first, so that an interrupted build never
    # leaves a partial set that a later run would take for a cached one.
    local tmp
    tmp="$(mktemp -d "$LOOM_K8S_BIN/.build.XXXXXX")"
    (cd "$here/tools" && go build -trimpath -ldflags='-s -w' -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl)
    mv "$tmp"/* "$LOOM_K8S_BIN/" && rmdir "$tmp"
  fi
  if [ ! -x "$LOOM_K8S_BIN/kwok" ]; then
    echo "up.sh: building kwok $LOOM_KWOK_VERSION into $LOOM_K8S_BIN" >&2
    local tmp
    tmp="$(mktemp -d "$LOOM_K8S_BIN/.build.XXXXXX")"
    # kwok has no replace directives: go install at its own go.sum.
    GOBIN="$tmp" GOFLAGS=-trimpath go install -ldflags='-s -w' "sigs.k8s.io/kwok/cmd/kwok@$LOOM_KWOK_VERSION"
    mv "$tmp/kwok" "$LOOM_K8S_BIN/" && rmdir "$tmp"
  fi
}

build
[ "${1:-}" = "--build-only" ] && { echo "$LOOM_K8S_BIN"; exit 0; }

command -v "$LOOM_ETCD" >/dev/null 2>&1 || { echo "up.sh: $LOOM_ETCD not found (Debian: apt-get install etcd-server; or set LOOM_ETCD)" >&2; exit 1; }
if [ -f "$LOOM_K8S_DIR/pids" ]; then
  echo "up.sh: $LOOM_K8S_DIR/pids exists: a control plane may be running there; run down.sh first" >&2
  exit 1
fi
mkdir -p "$LOOM_K8S_DIR"/{pki,etcd,logs}
cd "$LOOM_K8S_DIR"
: > pids

# ---- certificates and keys (openssl) ----------------------------------------
pki="$LOOM_K8S_DIR/pki"
if [ ! -f "$pki/apiserver.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=loom-k8s-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1\n' > "$pki/san.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
  # The key that signs and verifies service-account tokens.
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  # Static bearer tokens, one per client: the admin (kubectl, kwok) is in
  # system:masters; the controller manager and the scheduler are the users
  # that the bootstrap RBAC policy grants their roles to.
  umask 077
  for u in admin controller-manager scheduler; do
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$pki/$u.token"
  done
  {
    echo "$(cat "$pki/admin.token"),admin,admin,system:masters"
    echo "$(cat "$pki/controller-manager.token"),system:kube-controller-manager,system:kube-controller-manager"
    echo "$(cat "$pki/scheduler.token"),system:kube-scheduler,system:kube-scheduler"
  } > "$pki/tokens.csv"
  umask 022
fi

kubeconfig() { # kubeconfig FILE USER
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: loom-k8s
    cluster:
      server: https://127.0.0.1:$LOOM_K8S_PORT
      certificate-authority: $pki/ca.crt
users:
  - name: $2
    user:
      tokenFile: $pki/$2.token
contexts:
  - name: loom-k8s
    context: {cluster: loom-k8s, user: $2}
current-context: loom-k8s
EOF
}
kubeconfig "$LOOM_K8S_DIR/kubeconfig" admin
kubeconfig "$LOOM_K8S_DIR/controller-manager.kubeconfig" controller-manager
kubeconfig "$LOOM_K8S_DIR/scheduler.kubeconfig" scheduler
kctl() { "$LOOM_K8S_BIN/kubectl" --kubeconfig "$LOOM_K8S_DIR/kubeconfig" "$@"; }

start() { # start NAME COMMAND...
  local name="$1"; shift
  nohup "$@" > "$LOOM_K8S_DIR/logs/$name.log" 2>&1 &
  echo "$! $name" >> "$LOOM_K8S_DIR/pids"
}
wait_for() { # wait_for WHAT SECONDS COMMAND...
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "up.sh: $what not ready after ${secs}s; logs in $LOOM_K8S_DIR/logs" >&2
      exit 1
    fi
    sleep 1
  done
}

etcd_client=$((LOOM_K8S_PORT + 1))
etcd_peer=$((LOOM_K8S_PORT + 2))
start etcd "$LOOM_ETCD" --name loom-k8s --data-dir "$LOOM_K8S_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "loom-k8s=http://127.0.0.1:$etcd_peer"
wait_for etcd 30 curl -fsS "http://127.0.0.1:$etcd_client/health"

start kube-apiserver "$LOOM_K8S_BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_client" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$LOOM_K8S_PORT" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --cert-dir "$pki" \
  --token-auth-file "$pki/tokens.csv" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16
wait_for kube-apiserver 120 kctl get --raw /readyz

start kube-controller-manager "$LOOM_K8S_BIN/kube-controller-manager" \
  --kubeconfig "$LOOM_K8S_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$LOOM_K8S_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$LOOM_K8S_DIR/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
  --use-service-account-credentials \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --service-cluster-ip-range 10.96.0.0/16
start kube-scheduler "$LOOM_K8S_BIN/kube-scheduler" \
  --kubeconfig "$LOOM_K8S_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig "$LOOM_K8S_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig "$LOOM_K8S_DIR/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false
# kwok manages only the nodes annotated kwok.x-k8s.io/node=fake (nodes.yaml)
# and uses its default stages: nodes Ready with a heartbeat, pods Running and
# Ready once scheduled, deleted pods removed.
start kwok "$LOOM_K8S_BIN/kwok" --kubeconfig "$LOOM_K8S_DIR/kubeconfig" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --cidr=10.244.0.1/16 --node-ip=10.0.0.1 \
  --server-address=127.0.0.1:0 --config "$here/kwok-stages.yaml"

# The default service account appears once the controller manager runs.
wait_for "kube-controller-manager (the default ServiceAccount)" 90 kctl -n default get serviceaccount default
kctl apply -f "$here/nodes.yaml" >/dev/null
# Static PersistentVolumes stand in for a provisioner: kwok nodes have no
# disks, and the claims of deploy/k8s (1-10 GiB, storageClassName unset)
# bind to the smallest free one.
for i in $(seq 0 $((LOOM_K8S_PVS - 1))); do
  cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: loom-pv-$i
  labels: {loom.dev/static-pv: "true"}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /var/lib/loom-pv/$i}
EOF
done | kctl apply -f - >/dev/null
wait_for "kwok (nodes Ready)" 60 kctl wait --for=condition=Ready node --all --timeout=1s
echo "up.sh: control plane up; export KUBECONFIG=$LOOM_K8S_DIR/kubeconfig" >&2
echo "$LOOM_K8S_DIR/kubeconfig"
