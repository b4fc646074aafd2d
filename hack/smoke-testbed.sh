#!/usr/bin/env bash
# Smoke test of one testbed cluster (default dc1): a Deployment gets its pods
# scheduled and Running (kube-scheduler + KWOK), and deleting a namespace with
# a workload in it completes (namespace controller, garbage collector, KWOK pod
# deletion). Exits non-zero on failure.
#
#   hack/smoke-testbed.sh [dcN]
#
# Environment: TESTBED_STATE (as hack/testbed.sh), SMOKE_KUBECONFIG (overrides
# the cluster's kubeconfig), SMOKE_TIMEOUT (seconds per step, default 60).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

cluster="${1:-dc1}"
TESTBED_STATE="${TESTBED_STATE:-$GOVCLOUD_CACHE/testbed}"
kubeconfig="${SMOKE_KUBECONFIG:-$TESTBED_STATE/$cluster/kubeconfig}"
timeout="${SMOKE_TIMEOUT:-60}"
KUBECTL="$K8S_BIN/kubectl"
ns="smoke-$(date +%s)-$RANDOM"
replicas=2

log() { printf '[smoke %s] %s\n' "$cluster" "$*"; }
fail() { printf '[smoke %s] FAIL: %s\n' "$cluster" "$*" >&2; exit 1; }
k() { "$KUBECTL" --kubeconfig "$kubeconfig" --request-timeout=10s "$@"; }

[ -x "$KUBECTL" ] || fail "kubectl not found at $KUBECTL (run hack/testbed.sh up)"
[ -f "$kubeconfig" ] || fail "no kubeconfig at $kubeconfig (run hack/testbed.sh up)"

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    log "diagnostics:"
    k -n "$ns" get deploy,rs,pods -o wide >&2 2>/dev/null || true
    k -n "$ns" get events --sort-by=.lastTimestamp >&2 2>/dev/null | tail -n 20 >&2 || true
    k delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# poll DESCRIPTION CMD... — until CMD succeeds or the deadline passes.
poll() {
  local what="$1"; shift
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${timeout}s: $what"
    sleep 0.5
  done
}

running_pods() {
  local phases
  phases="$(k -n "$ns" get pods -l app=web -o 'jsonpath={range .items[*]}{.status.phase}{"\n"}{end}' 2>/dev/null)" || return 1
  [ "$(grep -c '^Running$' <<<"$phases")" -eq "$replicas" ]
}

namespace_gone() { local out; out="$(k get namespace "$1" --ignore-not-found -o name 2>/dev/null)" && [ -z "$out" ]; }

t0=$SECONDS
k get --raw /readyz >/dev/null || fail "API server of $cluster is not ready"
poll "service account default in namespace default" k -n default get serviceaccount default -o name >/dev/null

k create namespace "$ns" >/dev/null
poll "service account default in $ns" k -n "$ns" get serviceaccount default -o name >/dev/null
k -n "$ns" create deployment web --image=nginx --replicas="$replicas" >/dev/null
log "deployment $ns/web created ($replicas replicas)"

poll "$replicas Running pods of $ns/web" running_pods
k -n "$ns" rollout status deployment/web --timeout="${timeout}s" >/dev/null || fail "deployment $ns/web did not become available"
log "$replicas pods Running, deployment available: $(k -n "$ns" get pods -l app=web -o 'jsonpath={range .items[*]}{.metadata.name}@{.spec.nodeName} {end}')($((SECONDS - t0))s)"

t1=$SECONDS
k delete namespace "$ns" --wait=false >/dev/null
poll "namespace $ns to be deleted" namespace_gone "$ns"
log "namespace $ns with its deployment deleted in $((SECONDS - t1))s"

t2=$SECONDS
ns="$ns-empty"
k create namespace "$ns" >/dev/null
k delete namespace "$ns" --wait=false >/dev/null
poll "empty namespace $ns to be deleted" namespace_gone "$ns"
log "empty namespace created and deleted in $((SECONDS - t2))s"

log "OK in $((SECONDS - t0))s"
