#!/usr/bin/env bash
# Builds the node side of the single-node cluster from the Go module proxy into a cache outside
# the work tree, keyed by version, as scripts/build-control-plane.sh does for the control plane:
# kubelet, kube-controller-manager, kube-scheduler and kube-proxy (Kubernetes), CoreDNS with the
# few plugins a cluster's Service names need, and the pod sandbox's pause program.
# Prints the bin directory on its last line of stdout.
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION="${K8S_VERSION:-1.36.3}"
COREDNS_VERSION="${COREDNS_VERSION:-1.14.7}"
CACHE_ROOT="${GOLEM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/golem-operator}"
KEY="k8s-${K8S_VERSION}_coredns-${COREDNS_VERSION}"
BIN="$CACHE_ROOT/node/$KEY/bin"
SRC="$CACHE_ROOT/node/$KEY/src"
export GOMODCACHE="$CACHE_ROOT/go/mod" GOCACHE="$CACHE_ROOT/go/build"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
[[ -d /usr/local/go/bin ]] && export PATH="/usr/local/go/bin:$PATH"
log() { echo "[build-node] $*" >&2; }

K8S_TOOLS=(kubelet kube-controller-manager kube-scheduler kube-proxy)
complete=1
for tool in "${K8S_TOOLS[@]}" coredns pause; do [[ -x "$BIN/$tool" ]] || complete=0; done
if ((complete)); then
  log "cached: $BIN"
  echo "$BIN"
  exit 0
fi
mkdir -p "$BIN" "$SRC/k8s" "$SRC/coredns" "$SRC/pause"

# One builder at a time per cache key (two test sessions may start cold together).
exec 9>"$CACHE_ROOT/node/$KEY.lock"
flock 9

minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)
if (( minor >= 36 )); then staging+=(cri-streaming streaming); fi

need_k8s=0
for tool in "${K8S_TOOLS[@]}"; do [[ -x "$BIN/$tool" ]] || need_k8s=1; done
if ((need_k8s)); then
  (
    cd "$SRC/k8s"
    {
      printf 'module local/k8snodebuild\n\ngo 1.26.0\n\ngodebug default=go1.26\n\n'
      printf 'require k8s.io/kubernetes v%s\n\ntool (\n' "$K8S_VERSION"
      for tool in "${K8S_TOOLS[@]}"; do printf '\tk8s.io/kubernetes/cmd/%s\n' "$tool"; done
      printf ')\n\nreplace (\n'
      for m in "${staging[@]}"; do printf '\tk8s.io/%s => k8s.io/%s v0.%s\n' "$m" "$m" "${K8S_VERSION#*.}"; done
      printf ')\n'
    } > go.mod
    GOSUMDB=off go mod tidy >&2
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
      -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor \
      -X k8s.io/component-base/version.gitTreeState=clean"
    for tool in "${K8S_TOOLS[@]}"; do
      [[ -x "$BIN/$tool" ]] && continue
      started=$SECONDS
      go build -ldflags "$ldflags" -o "$BIN/$tool.partial" "k8s.io/kubernetes/cmd/$tool" >&2
      mv "$BIN/$tool.partial" "$BIN/$tool"
      log "built $tool v$K8S_VERSION in $((SECONDS - started))s"
    done
  )
fi

if [[ ! -x "$BIN/pause" ]]; then
  # The sandbox's first process: reaps orphans and exits on TERM/INT (pause/main.go).
  cp pause/main.go "$SRC/pause/main.go"
  printf 'module local/pause\n\ngo 1.26.0\n' > "$SRC/pause/go.mod"
  (cd "$SRC/pause" && go build -ldflags "-s -w" -o "$BIN/pause" . >&2)
  log "built pause"
fi

if [[ ! -x "$BIN/coredns" ]]; then
  # CoreDNS with only the plugins a single node's cluster DNS needs (coredns/main.go): the
  # kubernetes plugin answers for cluster.local; nothing is forwarded off the machine.
  started=$SECONDS
  cp coredns/main.go "$SRC/coredns/main.go"
  # Its Kubernetes client libraries at the node's version: the build reuses what the
  # kubelet's build compiled (three times faster on a cold cache than CoreDNS's own pins).
  k8s_lib="v0.${K8S_VERSION#*.}"
  printf 'module local/corednsbuild\n\ngo 1.26.0\n\nrequire (\n\tgithub.com/coredns/coredns v%s\n\tk8s.io/api %s\n\tk8s.io/apimachinery %s\n\tk8s.io/client-go %s\n)\n' \
    "$COREDNS_VERSION" "$k8s_lib" "$k8s_lib" "$k8s_lib" > "$SRC/coredns/go.mod"
  (
    cd "$SRC/coredns"
    GOSUMDB=off go mod tidy >&2
    go build -ldflags "-s -w" -o "$BIN/coredns.partial" . >&2
  )
  mv "$BIN/coredns.partial" "$BIN/coredns"
  log "built coredns v$COREDNS_VERSION in $((SECONDS - started))s"
fi

log "built: $BIN"
echo "$BIN"
