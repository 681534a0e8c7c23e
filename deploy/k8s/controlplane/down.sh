#!/usr/bin/env bash
# down.sh: stops the control plane that up.sh started in LOOM_K8S_DIR (the
# processes it recorded in LOOM_K8S_DIR/pids, newest first) and removes that
# directory. The cached binaries stay.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
. "$here/env.sh"
if [ -f "$LOOM_K8S_DIR/pids" ]; then
  tac "$LOOM_K8S_DIR/pids" | while read -r pid name; do
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "down.sh: stopped $name ($pid)" >&2
    fi
  done
fi
case "$LOOM_K8S_DIR" in
  ""|/) echo "down.sh: refusing to remove LOOM_K8S_DIR=$LOOM_K8S_DIR" >&2; exit 1 ;;
esac
rm -rf "$LOOM_K8S_DIR"
