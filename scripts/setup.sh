#!/usr/bin/env bash
# All set-up on a fresh machine: a virtualenv with the package and its dev tools,
# the Go-built control plane (kube-apiserver, etcd, kubectl, helm), yagna and bubblewrap.
# Heavy things are cached outside the work tree, keyed by version.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE_ROOT="${GOLEM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/golem-operator}"
VENV="${VENV:-.venv}"
log() { echo "[setup] $*" >&2; }

# Debian packages: bubblewrap isolates the local network's activities.
need_apt=()
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
command -v ip >/dev/null || need_apt+=(iproute2)
if ((${#need_apt[@]})); then
  log "apt-get install ${need_apt[*]}"
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >&2
fi

# Python environment.
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  log "creating $VENV and installing the package with its dev dependencies"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2
  "$VENV/bin/pip" install -q -e '.[dev]' >&2
  touch "$stamp"
fi

# yagna (PyPI golem-node) in its own cached virtualenv: it is a large binary wheel.
YAGNA_VERSION="${YAGNA_VERSION:-0.17.6}"
YAGNA_VENV="$CACHE_ROOT/yagna-$YAGNA_VERSION"
if [[ ! -x "$YAGNA_VENV/bin/yagna" ]]; then
  log "installing yagna $YAGNA_VERSION (golem-node) into $YAGNA_VENV"
  python3 -m venv "$YAGNA_VENV"
  "$YAGNA_VENV/bin/pip" install -q "golem-node==$YAGNA_VERSION" >&2
fi

# Control plane from the Go module proxy.
bin=$(bash scripts/build-control-plane.sh | tail -n 1)

# The single-node cluster of tests/cluster/ (scripts/cluster/): its Debian packages, the node's
# binaries from the Go module proxy and the images (the project's from the Dockerfile).
bash scripts/cluster/packages.sh
node_bin=$(bash scripts/cluster/build-node.sh | tail -n 1)
bash scripts/cluster/build-images.sh "$node_bin" >/dev/null

cat > .env.tools <<ENV
# written by scripts/setup.sh; sourced by the Makefile and the tests
export GOLEM_OPERATOR_BIN="$bin"
export GOLEM_OPERATOR_YAGNA="$YAGNA_VENV/bin/yagna"
export GOLEM_OPERATOR_NODE_BIN="$node_bin"
ENV
log "ready: control plane in $bin, yagna at $YAGNA_VENV/bin/yagna"
