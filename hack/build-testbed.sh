#!/usr/bin/env bash
# Build the local control plane from the Go module proxy into a cache outside
# the repository (never committed):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (Kubernetes)
#   etcd (3.6), kwok (fake nodes and pods).
# Cached by version: a second run finds the binaries and returns in seconds.
#
# Environment:
#   GOVCLOUD_CACHE      cache root (default ~/.cache/govcloud)
#   K8S_VERSION         default v1.34.4
#   ETCD_VERSION        default v3.6.16
#   KWOK_VERSION        default v0.8.0
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

log() { printf '[build-testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
export GOTOOLCHAIN=local

# Print a heartbeat while a long build runs, so CI logs show progress.
with_heartbeat() {
  local what="$1"; shift
  local start=$SECONDS
  ( while sleep 30; do log "… still building $what ($((SECONDS - start))s)"; done ) &
  local hb=$!
  local rc=0
  "$@" || rc=$?
  kill "$hb" 2>/dev/null || true
  wait "$hb" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then log "FAILED building $what (exit $rc)"; return "$rc"; fi
  log "built $what in $((SECONDS - start))s"
}

# Prints the k8s.io/* modules that a go.mod requires at v0.0.0 (staging modules).
staging_modules() {
  awk '/^require \(/{r=1;next} /^\)/{r=0} r && $1 ~ /^k8s\.io\// && $2=="v0.0.0" {print $1} /^require k8s\.io\/.* v0\.0\.0/ {print $2}' "$1" | sort -u
}

build_kubernetes() {
  local out="$K8S_BIN"
  if [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] && \
     [ -x "$out/kube-scheduler" ] && [ -x "$out/kubectl" ]; then
    log "kubernetes $K8S_VERSION: cached in $out"
    return 0
  fi
  local staging_ver="v0${K8S_VERSION#v1}"
  local wd="$GOVCLOUD_CACHE/src/kubernetes-$K8S_VERSION"
  mkdir -p "$wd" "$out.tmp"
  log "kubernetes $K8S_VERSION: downloading module (cold: several minutes)"
  local modfile
  modfile="$(cd "$wd" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [ -f "$modfile" ] || { log "cannot find go.mod of k8s.io/kubernetes@$K8S_VERSION"; return 1; }
  {
    echo "module govcloud.local/k8sbuild"
    echo
    echo "go 1.24"
    echo
    echo "godebug default=go1.24"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    for m in $(staging_modules "$modfile"); do
      echo "replace $m => $m $staging_ver"
    done
  } > "$wd/go.mod"
  log "kubernetes: wrapper module with $(grep -c '^replace' "$wd/go.mod") staging replaces"
  local ldflags="-s -w \
    -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) \
    -X k8s.io/component-base/version.gitTreeState=clean \
    -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
    -X k8s.io/client-go/pkg/version.gitMajor=1 \
    -X k8s.io/client-go/pkg/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
  (cd "$wd" && with_heartbeat "module graph" go mod download k8s.io/kubernetes) >&2
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    (cd "$wd" && with_heartbeat "$cmd" go build -mod=mod -trimpath -ldflags "$ldflags" \
      -o "$out.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  done
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_etcd() {
  local out="$ETCD_BIN"
  if [ -x "$out/etcd" ]; then log "etcd $ETCD_VERSION: cached in $out"; return 0; fi
  local wd="$GOVCLOUD_CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$wd" "$out.tmp"
  local modfile
  modfile="$(cd "$wd" && go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module govcloud.local/etcdbuild"
    echo
    echo "go 1.24"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    echo
    grep -Eo 'go\.etcd\.io/etcd/[a-z0-9/]+/v3 => \.\./[a-z0-9/]+' "$modfile" | awk '{print $1}' | sort -u | \
      while read -r m; do echo "replace $m => $m $ETCD_VERSION"; done
  } > "$wd/go.mod"
  (cd "$wd" && with_heartbeat etcd go build -mod=mod -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3)
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_kwok() {
  local out="$KWOK_BIN"
  if [ -x "$out/kwok" ]; then log "kwok $KWOK_VERSION: cached in $out"; return 0; fi
  mkdir -p "$out.tmp"
  with_heartbeat kwok env GOBIN="$out.tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # The stock stages (node heartbeat, pod lifecycle) ship in the module.
  local moddir
  moddir="$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  mkdir -p "$out.tmp/stages"
  cp "$moddir/kustomize/stage/node/fast/"*.yaml "$out.tmp/stages/" 2>/dev/null || true
  cp "$moddir/kustomize/stage/pod/fast/"*.yaml "$out.tmp/stages/" 2>/dev/null || true
  rm -f "$out.tmp/stages/kustomization.yaml"
  chmod -R u+w "$out.tmp"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

main() {
  local start=$SECONDS
  mkdir -p "$GOVCLOUD_CACHE"
  log "cache: $GOVCLOUD_CACHE (outside the repository)"
  build_etcd
  build_kwok
  build_kubernetes
  log "control plane binaries ready in $((SECONDS - start))s"
}

main "$@"
