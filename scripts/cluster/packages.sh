#!/usr/bin/env bash
# Debian packages the single-node cluster needs (scripts/cluster/README.md): containerd and runc
# run the pods, the CNI plugins wire them to the machine-local bridge, buildah builds the
# Dockerfile without a Docker engine, debootstrap makes the base images, iptables and conntrack
# serve kube-proxy. Installed only when missing.
set -euo pipefail
log() { echo "[cluster-packages] $*" >&2; }
missing=()
have() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" || -x "/sbin/$1" ]]; }
have containerd || missing+=(containerd)
have runc || missing+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap ]] \
  || missing+=(containernetworking-plugins)
have buildah || missing+=(buildah)
have debootstrap || missing+=(debootstrap)
have iptables || missing+=(iptables)
have conntrack || missing+=(conntrack)
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
log "apt-get install ${missing[*]}"
# Several sessions may set up at once: dpkg's lock is waited for, not raced.
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends "${missing[@]}" >&2
