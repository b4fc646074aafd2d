#!/usr/bin/env bash
# Build Helm from its Go module (helm.sh/helm/v3) into a cache outside the repository:
#   $HELM_BIN/helm   (HELM_VERSION, default in hack/versions.sh)
# Cached by version: a second run finds the binary and returns at once. Prints the path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

log() { printf '[build-helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ -x "$HELM_BIN/helm" ]; then
  log "helm $HELM_VERSION: cached in $HELM_BIN"
  echo "$HELM_BIN/helm"
  exit 0
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
mkdir -p "$HELM_BIN.tmp"
start=$SECONDS
log "helm $HELM_VERSION: building helm.sh/helm/v3/cmd/helm from the Go module proxy (a few minutes on a new machine)"
( while sleep 30; do log "… still building helm ($((SECONDS - start))s)"; done ) &
hb=$!
rc=0
# As helm's Makefile does: the default Kubernetes version of `helm template` and `helm
# lint` follows the client-go it is built with (v0.N -> 1.N); without it, it is 1.20.
build() {
  local moddir minor
  moddir="$(cd "$HELM_BIN.tmp" && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  minor="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$moddir/go.mod" | head -n 1)"
  [ -n "$minor" ] || { log "cannot find the client-go version in $moddir/go.mod"; return 1; }
  local ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  # go install with an explicit version builds in module mode, outside any go.mod.
  (cd "$HELM_BIN.tmp" && GOBIN="$HELM_BIN.tmp" go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
}
build || rc=$?
kill "$hb" 2>/dev/null || true
wait "$hb" 2>/dev/null || true
if [ "$rc" -ne 0 ]; then
  log "FAILED building helm $HELM_VERSION (exit $rc)"
  exit "$rc"
fi
rm -rf "$HELM_BIN"
mv "$HELM_BIN.tmp" "$HELM_BIN"
log "built helm $HELM_VERSION in $((SECONDS - start))s: $("$HELM_BIN/helm" version --short)"
echo "$HELM_BIN/helm"
