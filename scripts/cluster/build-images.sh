#!/usr/bin/env bash
# Images for the single-node cluster, without a registry, each behind a cache key:
#   pause      the pod sandbox (build-node.sh's static pause program, from scratch);
#   python     a stand-in for the Dockerfile's base image python:3.11-slim-bookworm: Debian
#              bookworm (debootstrap) with its Python 3.11, laid out as the official image has it
#              (python3, python, pip in /usr/local/bin; LANG=C.UTF-8; CMD python3);
#   operator   the project's Dockerfile, unchanged, built with buildah on that base.
# Each lands as an OCI archive in $CACHE_ROOT/cluster/images/ named by its key; the cluster
# imports the archives into its containerd. Usage: build-images.sh NODE_BIN_DIR
# Prints, on its last line of stdout, a JSON object: {"pause": {"ref":..,"archive":..}, ...}.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
NODE_BIN="${1:?usage: build-images.sh NODE_BIN_DIR}"
CACHE_ROOT="${GOLEM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/golem-operator}"
IMAGES="$CACHE_ROOT/cluster/images"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# buildah's default OCI runtime here is crun, which refuses hybrid cgroup hosts.
RUNTIME="${BUILDAH_RUNTIME:-$(command -v runc)}"
log() { echo "[build-images] $*" >&2; }
mkdir -p "$IMAGES"
exec 9>"$IMAGES/.lock"
flock 9

short() { sha256sum | cut -c1-16; }

# --- python:3.11-slim-bookworm stand-in ---------------------------------------------------
PYTHON_REF="docker.io/library/python:3.11-slim-bookworm"
PYTHON_PACKAGES="python3,python3-venv,python3-pip,ca-certificates"
# Bump when the recipe below changes: the key names the cached archive.
PYTHON_RECIPE=1
python_key=$(echo "bookworm $DEBIAN_MIRROR $PYTHON_PACKAGES recipe-$PYTHON_RECIPE" | short)
PYTHON_TAR="$IMAGES/python-3.11-slim-bookworm-$python_key.tar"
if [[ ! -s "$PYTHON_TAR" ]]; then
  started=$SECONDS
  rootfs="$IMAGES/rootfs-$python_key"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include="$PYTHON_PACKAGES" bookworm "$rootfs" "$DEBIAN_MIRROR" >&2
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  # The official image's layout: its interpreter and pip are reached through /usr/local/bin.
  for name in python3 python3.11 python; do ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/$name"; done
  for name in pip3 pip; do ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/$name"; done
  tar -C "$rootfs" -cf "$rootfs.tar" .
  c=$(buildah from scratch)
  buildah add "$c" "$rootfs.tar" / >/dev/null
  buildah config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --env PYTHON_VERSION=3.11 --cmd '["python3"]' \
    --label org.golem-operator.stand-in-for=python:3.11-slim-bookworm "$c"
  buildah commit --rm -q "$c" "$PYTHON_REF" >/dev/null
  buildah push -q --disable-compression "$PYTHON_REF" "oci-archive:$PYTHON_TAR.partial:$PYTHON_REF" >&2
  mv "$PYTHON_TAR.partial" "$PYTHON_TAR"
  rm -rf "$rootfs" "$rootfs.tar"
  log "python base image in $((SECONDS - started))s"
elif ! buildah inspect --type image "$PYTHON_REF" >/dev/null 2>&1; then
  buildah pull -q "oci-archive:$PYTHON_TAR" >/dev/null
  buildah tag "$(buildah images -q --filter "label=org.golem-operator.stand-in-for" | head -n1)" "$PYTHON_REF"
fi

# --- the project's image -------------------------------------------------------------------
# Keyed by everything the Dockerfile copies, the lock files and the base image.
operator_key=$(
  cd "$ROOT"
  {
    echo "$python_key"
    sha256sum Dockerfile requirements.lock requirements-build.lock pyproject.toml scripts/yagna-sidecar.sh
    find operator -type f \( -name '*.py' -o -name 'py.typed' \) -not -path '*/__pycache__/*' \
      -print0 | sort -z | xargs -0 sha256sum
  } | short
)
OPERATOR_REF="localhost/golem-operator:$operator_key"
OPERATOR_TAR="$IMAGES/golem-operator-$operator_key.tar"
if [[ ! -s "$OPERATOR_TAR" ]]; then
  started=$SECONDS
  if ! buildah inspect --type image "$PYTHON_REF" >/dev/null 2>&1; then
    buildah pull -q "oci-archive:$PYTHON_TAR" >/dev/null
  fi
  # The Dockerfile is built as users build it. The build's RUN steps reach PyPI through the
  # host's network and trust the host's CA bundle (this machine's TLS path to PyPI needs it).
  (
    cd "$ROOT"
    buildah bud --pull=never --network=host --layers --runtime="$RUNTIME" \
      -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
      -t "$OPERATOR_REF" -f Dockerfile . >&2
  )
  buildah push -q --disable-compression "$OPERATOR_REF" "oci-archive:$OPERATOR_TAR.partial:$OPERATOR_REF" >&2
  mv "$OPERATOR_TAR.partial" "$OPERATOR_TAR"
  log "operator image $OPERATOR_REF in $((SECONDS - started))s"
fi
# --- pause ---------------------------------------------------------------------------------
PAUSE_REF="registry.k8s.io/pause:3.10"
pause_key=$(sha256sum "$NODE_BIN/pause" | short)
PAUSE_TAR="$IMAGES/pause-$pause_key.tar"
if [[ ! -s "$PAUSE_TAR" ]]; then
  started=$SECONDS
  c=$(buildah from scratch)
  buildah copy "$c" "$NODE_BIN/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  buildah commit --rm -q "$c" "$PAUSE_REF" >/dev/null
  buildah push -q --disable-compression "$PAUSE_REF" "oci-archive:$PAUSE_TAR.partial:$PAUSE_REF" >&2
  mv "$PAUSE_TAR.partial" "$PAUSE_TAR"
  log "pause image in $((SECONDS - started))s"
fi

# Working containers left by an interrupted build would pin storage mounts.
buildah rm --all >/dev/null 2>&1 || true

# Archives of other keys are stale: keep only the current ones.
find "$IMAGES" -maxdepth 1 -name '*.tar' \
  ! -name "$(basename "$PAUSE_TAR")" ! -name "$(basename "$PYTHON_TAR")" \
  ! -name "$(basename "$OPERATOR_TAR")" -delete

printf '{"pause": {"ref": "%s", "archive": "%s"}, "python": {"ref": "%s", "archive": "%s"}, "operator": {"ref": "%s", "archive": "%s"}}\n' \
  "$PAUSE_REF" "$PAUSE_TAR" "$PYTHON_REF" "$PYTHON_TAR" "$OPERATOR_REF" "$OPERATOR_TAR"
