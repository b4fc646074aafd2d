#!/usr/bin/env bash
# The Helm chart on the local control plane, with Helm built from its Go module
# (hack/build-helm.sh, cached outside the repository).
#
#   hack/chart.sh lint                 helm lint (strict) with the default values
#   hack/chart.sh template [ARGS...]   helm template with the default values (+ ARGS)
#   hack/chart.sh install [ARGS...]    helm upgrade --install into the hub (testbed dc1),
#                                      release govcloud-operator in govcloud-system, --wait
#   hack/chart.sh uninstall            helm uninstall (CRDs are kept, as Helm does)
#   hack/chart.sh member KUBECONFIG [ARGS...]
#                                      prepares a member cluster for the operator, as
#                                      docs/install.md says: namespace and ServiceAccount
#                                      govcloud-operator, the member manifest
#                                      (templates/member-rbac.yaml) applied; then prints a
#                                      token of that ServiceAccount (24 h) for its kubeconfig
#   hack/chart.sh helm ARGS...         any helm command against the hub
#
# Environment: TESTBED_STATE (default ~/.cache/govcloud/testbed), KUBECONFIG (default the
# hub's), CHART_RELEASE (govcloud-operator), CHART_NAMESPACE (govcloud-system).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

log() { printf '[chart %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

TESTBED_STATE="${TESTBED_STATE:-$GOVCLOUD_CACHE/testbed}"
export KUBECONFIG="${KUBECONFIG:-$TESTBED_STATE/dc1/kubeconfig}"
release="${CHART_RELEASE:-govcloud-operator}"
namespace="${CHART_NAMESPACE:-govcloud-system}"
chart="${CHART_DIR:-$root/charts/govcloud-operator}"

# Helm's own state stays in the cache, not in $HOME.
export HELM_CACHE_HOME="$GOVCLOUD_CACHE/helm/cache"
export HELM_CONFIG_HOME="$GOVCLOUD_CACHE/helm/config"
export HELM_DATA_HOME="$GOVCLOUD_CACHE/helm/data"

helm="$("$here/build-helm.sh")"

# Retries while another helm operation on the same release is in progress (two test
# binaries may install at the same moment).
with_retry() {
  local i out rc
  for i in 1 2 3 4 5 6 7 8 9 10; do
    rc=0
    out="$("$@" 2>&1)" || rc=$?
    if [ "$rc" -eq 0 ]; then printf '%s\n' "$out"; return 0; fi
    if grep -q "another operation (install/upgrade/rollback) is in progress" <<<"$out"; then
      log "another helm operation is in progress; retrying ($i)"
      sleep 3
      continue
    fi
    printf '%s\n' "$out" >&2
    return "$rc"
  done
  printf '%s\n' "$out" >&2
  return 1
}

cmd="${1:-}"; shift || true
case "$cmd" in
  lint)
    "$helm" lint --strict "$chart" "$@"
    ;;
  template)
    "$helm" template "$release" "$chart" --namespace "$namespace" "$@"
    ;;
  install)
    log "installing $release into $namespace on $(sed -n 's/^ *server: //p' "$KUBECONFIG" | head -n 1)"
    # The member manifest (rbac.hubIsMember) has a Role in Velero's namespace, which must
    # exist: on the testbed it does once hack/velero.sh ran; create it for runs without it.
    if "$K8S_BIN/kubectl" --request-timeout=30s get namespace velero >/dev/null 2>&1; then :; else
      log "creating namespace velero (for the member manifest's Role)"
      "$K8S_BIN/kubectl" --request-timeout=30s create namespace velero >/dev/null 2>&1 || true
    fi
    # The agency roles were written by the operator itself before the chart installed them
    # (rbac.hubIsMember): Helm adopts such objects only with its ownership marks.
    for role in govcloud-agency-owner govcloud-agency-viewer; do
      owner="$("$K8S_BIN/kubectl" --request-timeout=30s get clusterrole "$role" --ignore-not-found \
        -o 'jsonpath={.metadata.annotations.meta\.helm\.sh/release-name}' 2>/dev/null)" || continue
      if [ -z "$owner" ] && "$K8S_BIN/kubectl" --request-timeout=30s get clusterrole "$role" >/dev/null 2>&1; then
        log "ClusterRole $role (written by an earlier operator) adopted by the release"
        "$K8S_BIN/kubectl" --request-timeout=30s annotate clusterrole "$role" --overwrite \
          "meta.helm.sh/release-name=$release" "meta.helm.sh/release-namespace=$namespace" >/dev/null
        "$K8S_BIN/kubectl" --request-timeout=30s label clusterrole "$role" --overwrite \
          app.kubernetes.io/managed-by=Helm >/dev/null
      fi
    done
    with_retry "$helm" upgrade --install "$release" "$chart" --namespace "$namespace" \
      --create-namespace --wait --timeout 3m "$@" >/dev/null
    log "installed: $("$helm" status "$release" --namespace "$namespace" -o json | sed -n 's/.*"status":"\([a-z-]*\)".*/\1/p' | head -n 1)"
    ;;
  member)
    member_kc="${1:?usage: hack/chart.sh member KUBECONFIG [ARGS...]}"
    shift
    kubectl="$K8S_BIN/kubectl"
    mk() { "$kubectl" --kubeconfig "$member_kc" --request-timeout=30s "$@"; }
    velero_ns=velero
    for a in "$@"; do
      case "$a" in rbac.memberVeleroNamespace=*) velero_ns="${a#*=}" ;; esac
    done
    {
      printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\n' "$namespace"
      [ -z "$velero_ns" ] || printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\n' "$velero_ns"
      printf 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: %s}\n---\n' "$release" "$namespace"
      "$helm" template "$release" "$chart" --namespace "$namespace" --set rbac.hubIsMember=true \
        --show-only templates/member-rbac.yaml "$@"
    } | mk apply --server-side --force-conflicts --field-manager=govcloud-member-manifest -f - >/dev/null
    mk -n "$namespace" create token "$release" --duration=24h
    ;;
  uninstall)
    "$helm" uninstall "$release" --namespace "$namespace" --wait "$@"
    ;;
  helm)
    "$helm" "$@"
    ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
