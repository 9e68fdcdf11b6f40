#!/usr/bin/env bash
# Builds kube-apiserver, kubectl, etcd and helm from the Go module proxy into a cache
# outside the work tree, keyed by version, and reuses it on later runs.
# Prints the bin directory on its last line of stdout.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
HELM_VERSION="${HELM_VERSION:-3.22.0}"
CACHE_ROOT="${GOLEM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/golem-operator}"
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}"
BIN="$CACHE_ROOT/control-plane/$KEY/bin"
export GOMODCACHE="$CACHE_ROOT/go/mod" GOCACHE="$CACHE_ROOT/go/build"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

log() { echo "[build-control-plane] $*" >&2; }

if [[ -x "$BIN/kube-apiserver" && -x "$BIN/kubectl" && -x "$BIN/etcd" && -x "$BIN/helm" ]]; then
  log "cached: $BIN"
  echo "$BIN"
  exit 0
fi
mkdir -p "$BIN"
work="$CACHE_ROOT/control-plane/$KEY/src"
mkdir -p "$work/k8s" "$work/etcd"

minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)
if (( minor >= 36 )); then staging+=(cri-streaming streaming); fi

if [[ ! -x "$BIN/kube-apiserver" || ! -x "$BIN/kubectl" ]]; then
  log "building kube-apiserver and kubectl v$K8S_VERSION (cold: tens of minutes on 2 cores)"
  (
    cd "$work/k8s"
    {
      echo "module local/k8sbuild"
      echo
      echo "go 1.26.0"
      echo
      echo "godebug default=go1.26"
      echo
      echo "require k8s.io/kubernetes v$K8S_VERSION"
      echo
      echo "tool ("
      echo "	k8s.io/kubernetes/cmd/kube-apiserver"
      echo "	k8s.io/kubernetes/cmd/kubectl"
      echo ")"
      echo
      echo "replace ("
      for m in "${staging[@]}"; do echo "	k8s.io/$m => k8s.io/$m v0.${K8S_VERSION#*.}"; done
      echo ")"
    } > go.mod
    GOSUMDB=off go mod tidy >&2
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
      -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor \
      -X k8s.io/component-base/version.gitTreeState=clean"
    go build -ldflags "$ldflags" -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
    go build -ldflags "$ldflags" -o "$BIN/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
  )
fi

if [[ ! -x "$BIN/etcd" ]]; then
  log "building etcd v$ETCD_VERSION"
  (
    cd "$work/etcd"
    printf 'module local/etcdbuild\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 v%s\n\ntool go.etcd.io/etcd/server/v3\n' "$ETCD_VERSION" > go.mod
    GOSUMDB=off go mod tidy >&2
    go build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3 >&2
  )
fi

if [[ ! -x "$BIN/helm" ]]; then
  log "building helm v$HELM_VERSION"
  GOBIN="$BIN" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2
fi

log "built: $BIN"
echo "$BIN"
