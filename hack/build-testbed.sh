#!/usr/bin/env bash
# Build the local control plane from the Go module proxy into a cache outside
# the repository (never committed):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (Kubernetes)
#   etcd (3.6), kwok (fake nodes and pods);
#   kubelet, kube-proxy (Kubernetes), kube-router (NetworkPolicy firewall) and the
#   local-path provisioner (volumes) for the real nodes, unless --control-plane-only.
# Cached by version: a second run finds the binaries and returns in seconds.
#
# Environment:
#   GOVCLOUD_CACHE      cache root (default ~/.cache/govcloud)
#   K8S_VERSION         default v1.34.4
#   ETCD_VERSION        default v3.6.16
#   KWOK_VERSION        default v0.8.0
#   KUBE_ROUTER_VERSION default v2.1.0
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

# The wrapper module that builds Kubernetes commands at $K8S_VERSION (created once).
kubernetes_wrapper() {
  local wd="$GOVCLOUD_CACHE/src/kubernetes-$K8S_VERSION"
  if [ -f "$wd/go.mod" ] && grep -q '^replace' "$wd/go.mod"; then echo "$wd"; return 0; fi
  local staging_ver="v0${K8S_VERSION#v1}"
  mkdir -p "$wd"
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
  } > "$wd/go.mod.tmp"
  mv "$wd/go.mod.tmp" "$wd/go.mod"
  log "kubernetes: wrapper module with $(grep -c '^replace' "$wd/go.mod") staging replaces"
  (cd "$wd" && with_heartbeat "module graph" go mod download k8s.io/kubernetes) >&2
  echo "$wd"
}

# build_kubernetes CMD... — builds the Kubernetes commands that are not cached yet
# (each one separately, so adding a command later does not rebuild the others).
build_kubernetes() {
  local out="$K8S_BIN" cmd missing=()
  for cmd in "$@"; do [ -x "$out/$cmd" ] || missing+=("$cmd"); done
  if [ ${#missing[@]} -eq 0 ]; then
    log "kubernetes $K8S_VERSION ($*): cached in $out"
    return 0
  fi
  local wd; wd="$(kubernetes_wrapper)"
  local minor; minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  local ldflags="-s -w \
    -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/component-base/version.gitTreeState=clean \
    -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
    -X k8s.io/client-go/pkg/version.gitMajor=1 \
    -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  mkdir -p "$out"
  for cmd in "${missing[@]}"; do
    (cd "$wd" && with_heartbeat "$cmd" go build -mod=mod -trimpath -ldflags "$ldflags" \
      -o "$out/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$out/$cmd.tmp" "$out/$cmd"
  done
}

# kube-router's NetworkPolicy firewall (iptables + ipset) for the real nodes. Only
# v2.1.0 is served by the Go module proxy here (newer versions answer 403 "This module
# version is not available"); see docs/development.md.
build_kube_router() {
  local out="$KUBE_ROUTER_BIN"
  if [ -x "$out/kube-router" ]; then log "kube-router $KUBE_ROUTER_VERSION: cached in $out"; return 0; fi
  local wd="$GOVCLOUD_CACHE/src/kube-router-$KUBE_ROUTER_VERSION"
  mkdir -p "$wd" "$out"
  printf 'module govcloud.local/krbuild\n\ngo 1.24\n\nrequire github.com/cloudnativelabs/kube-router/v2 %s\n' \
    "$KUBE_ROUTER_VERSION" >"$wd/go.mod"
  (cd "$wd" && with_heartbeat "kube-router $KUBE_ROUTER_VERSION" go build -mod=mod -trimpath \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
    -o "$out/kube-router.tmp" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
  mv "$out/kube-router.tmp" "$out/kube-router"
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

# The real nodes' volume provisioner (rancher's local-path provisioner; its go.mod has no
# replace lines, so go install works).
build_local_path() {
  local out="$LOCAL_PATH_BIN"
  if [ -x "$out/local-path-provisioner" ]; then log "local-path-provisioner $LOCAL_PATH_VERSION: cached in $out"; return 0; fi
  mkdir -p "$out.tmp"
  with_heartbeat "local-path-provisioner $LOCAL_PATH_VERSION" env GOBIN="$out.tmp" go install -trimpath \
    -ldflags "-s -w -X main.VERSION=$LOCAL_PATH_VERSION" "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

main() {
  local start=$SECONDS
  mkdir -p "$GOVCLOUD_CACHE"
  log "cache: $GOVCLOUD_CACHE (outside the repository)"
  build_etcd
  build_kwok
  build_kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl
  if [ "${1:-}" != --control-plane-only ]; then
    # Real nodes (hack/realnode.sh): kubelet and kube-proxy from the same module, kube-router.
    build_kubernetes kubelet kube-proxy
    build_kube_router
    build_local_path
  fi
  log "control plane binaries ready in $((SECONDS - start))s"
}

main "$@"
