#!/usr/bin/env bash
# The operator running from its own image, as users install it: the Helm chart with the
# image that hack/images.sh builds and pushes to the local registry, both replicas on the
# hub's real node (dc1-real). Checks, on the running testbed:
#   1. both pods run the pushed image (by digest) on dc1-real and become Ready;
#   2. the operator in its pod converges an agency placed on the member dc2, which it
#      reaches through the real node's forward of dc2's API server (10.87.1.1:<port>);
#   3. leader takeover with real pods: the Lease holder's pod is killed (deleted with no
#      grace period), the other replica takes the Lease and converges a new agency;
#      the takeover time is printed and must be <= E2E_TAKEOVER_TARGET seconds (15);
#   4. the examples (examples/clusters.yaml, examples/agencies/) converged by it;
#   5. the chart's `helm test` (the kubectl plugin's image, --version) and the S3 gateway's
#      image run on dc1-real;
#   6. the gateway's chart (charts/govcloud-s3-gateway) installed on dc1-real, two pods
#      Ready, and its `helm test` (the gateway's `check --probe` through its Service and
#      NetworkPolicy).
# Afterwards the chart is put back as it was (pods on the KWOK nodes, the default image),
# and the test objects are deleted.
#
#   hack/operator-image-e2e.sh
#
# Figures go to target/reliability/operator-image.json. Environment: TESTBED_STATE,
# E2E_TAKEOVER_TARGET (15), E2E_TIMEOUT (seconds per wait, 180).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
here="$PWD/hack"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

TESTBED_STATE="${TESTBED_STATE:-$GOVCLOUD_CACHE/testbed}"
hub_kc="$TESTBED_STATE/dc1/kubeconfig"
KUBECTL="$K8S_BIN/kubectl"
ns=govcloud-system
target="${E2E_TAKEOVER_TARGET:-15}"
timeout="${E2E_TIMEOUT:-180}"
run="e2e$(date +%s | tail -c 5)$RANDOM"

log() { printf '[operator-image-e2e %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf '[operator-image-e2e] FAIL: %s\n' "$*" >&2; exit 1; }
k() { "$KUBECTL" --kubeconfig "$hub_kc" --request-timeout=15s "$@"; }
now_ms() { date +%s%3N; }

[ -f "$hub_kc" ] || fail "no testbed (run hack/testbed.sh up)"
k get node dc1-real >/dev/null 2>&1 || fail "the hub has no real node (TESTBED_REAL_NODES=0?)"

# poll DESCRIPTION CMD... until CMD succeeds or the timeout passes.
poll() {
  local what="$1"; shift
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${timeout}s waiting for $what"
    sleep 0.5
  done
}

restore() {
  local rc=$?
  log "cleaning up: test objects, chart back to its suite settings"
  k delete agencycloud -l "govcloud.io/e2e=$run" --wait=false >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 120))
  while [ -n "$(k get agencycloud -l "govcloud.io/e2e=$run" -o name 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do
    sleep 1
  done
  k delete datacentercluster -l "govcloud.io/e2e=$run" --wait=false >/dev/null 2>&1 || true
  if [ "${examples_applied:-false}" = true ]; then
    # The examples protect their namespaces: let them go (this is a test run).
    k patch agencycloud mof zj-bigdata --type=merge -p '{"spec":{"deletionPolicy":"Delete"}}' >/dev/null 2>&1 || true
    k delete -f examples/agencies/ --wait=false >/dev/null 2>&1 || true
    deadline=$((SECONDS + 120))
    while k get agencycloud mof zj-bigdata >/dev/null 2>&1 && [ $SECONDS -lt $deadline ]; do sleep 1; done
    k delete -f examples/clusters.yaml --wait=false >/dev/null 2>&1 || true
    k -n "$ns" delete secret dc2-kubeconfig --ignore-not-found >/dev/null 2>&1 || true
  fi
  k -n "$ns" delete secret "$run-member" --ignore-not-found >/dev/null 2>&1 || true
  k delete namespace -l "govcloud.io/e2e=$run" --wait=false >/dev/null 2>&1 || true
  bash "$here/chart.sh" install --set rbac.hubIsMember=true >/dev/null 2>&1 || log "could not restore the chart"
  rm -f "${values:-}" "${values:-}.dc2"
  if [ "$rc" -ne 0 ]; then
    k -n "$ns" get pods -o wide >&2 || true
    k -n "$ns" logs -l app.kubernetes.io/name=govcloud-operator --tail=30 --prefix >&2 2>/dev/null || true
  fi
}
trap restore EXIT

log "images: building and pushing (hack/images.sh --push)"
bash "$here/images.sh" --push >/dev/null
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
digest="$(curl -fsSI -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://127.0.0.1:${REGISTRY_PORT:-15000}/v2/govcloud/govcloud-operator/manifests/$version" |
  tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')"
[ -n "$digest" ] || fail "registry.gov.cn/govcloud/govcloud-operator:$version is not in the local registry"
log "operator image registry.gov.cn/govcloud/govcloud-operator:$version@$digest"

values="$(mktemp)"
cat >"$values" <<EOF
image:
  repository: registry.gov.cn/govcloud/govcloud-operator
  digest: "$digest"
nodeSelector:
  govcloud.io/node-kind: real
tolerations:
- {key: govcloud.io/node-kind, operator: Equal, value: real, effect: NoSchedule}
rbac:
  hubIsMember: true
networkPolicy:
  # The chart's own NetworkPolicy is enforced on the real node: the operator may reach
  # only these API server ports (the testbed's clusters listen on their own ports).
  apiServerPorts: [443, 6443$(for f in "$TESTBED_STATE"/dc*/cluster.env; do printf ', %s' "$(sed -n 's/^P_API=//p' "$f")"; done)]
EOF
t0=$(now_ms)
bash "$here/chart.sh" install -f "$values"
log "chart installed, pods Ready in $(( ($(now_ms) - t0) / 1000 )) s"

pods_on_real_node() {
  local out
  out="$(k -n "$ns" get pods -l app.kubernetes.io/name=govcloud-operator \
    -o 'jsonpath={range .items[?(@.metadata.deletionTimestamp)]}x{end}{range .items[*]}{.spec.nodeName} {.status.containerStatuses[0].imageID} {.status.containerStatuses[0].ready}{"\n"}{end}')"
  [ "$(grep -c "^dc1-real .*@$digest true$" <<<"$out")" -ge 2 ] && ! grep -q '^x' <<<"$out"
}
poll "two Ready operator pods on dc1-real running $digest" pods_on_real_node
k -n "$ns" get pods -l app.kubernetes.io/name=govcloud-operator -o wide

# The plugin's and the gateway's images run on the real node too (their --version).
image_runs() {
  local name="$1" image="$2"; shift 2
  k -n "$ns" delete pod "$name" --ignore-not-found --wait=false >/dev/null
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: $ns, labels: {govcloud.io/e2e: "$run"}}
spec:
  restartPolicy: Never
  nodeSelector: {govcloud.io/node-kind: real}
  tolerations: [{key: govcloud.io/node-kind, operator: Equal, value: real, effect: NoSchedule}]
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: main
    image: $image
    args: [$(printf '"%s",' "$@" | sed 's/,$//')]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
    resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 200m, memory: 64Mi}}
EOF
  pod_succeeded() { [ "$(k -n "$ns" get pod "$1" -o 'jsonpath={.status.phase}')" = Succeeded ]; }
  poll "pod $name ($image) Succeeded on dc1-real" pod_succeeded "$name"
  local out
  out="$(k -n "$ns" logs "$name")"
  grep -q "$version" <<<"$out" || fail "$image printed '$out', not its version $version"
  log "$image on dc1-real: $out"
  k -n "$ns" delete pod "$name" --wait=false >/dev/null
}
# The chart's own test (templates/tests/): the plugin's image of this version, on the
# operator's nodes (here the real node).
out="$(bash "$here/chart.sh" helm test govcloud-operator --namespace "$ns" --logs --timeout 3m 2>&1)" \
  || fail "helm test failed: $out"
grep -q "Phase: *Succeeded" <<<"$out" && grep -q "$version" <<<"$out" || fail "helm test: $out"
log "helm test: $(grep -m1 'kubectl-govcloud' <<<"$out")"
image_runs "$run-gateway" "registry.gov.cn/govcloud/govcloud-s3-gateway:$version" --version

# The gateway's chart (charts/govcloud-s3-gateway) on the real node: its pods Ready under the
# chart's hardened settings with the Secrets mounted, then its `helm test`, whose pod runs
# `govcloud-s3-gateway check --probe` through the Service and the chart's NetworkPolicy
# (enforced by kube-router on the real node). The store behind it is never reached: pods
# cannot reach the host's stores on this testbed by design (hack/realnode.sh), and the
# round trip through the gateway binary is proven by tests/tests/gateway.rs and backup.rs.
gw_release="$run-gw"
gw_ns="$run-gw"
k create namespace "$gw_ns" >/dev/null
k label namespace "$gw_ns" govcloud.io/e2e="$run" pod-security.kubernetes.io/enforce=restricted >/dev/null
hex16() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
k -n "$gw_ns" create secret generic store --from-literal=secret-key="$(hex16)" >/dev/null
k -n "$gw_ns" create secret generic kek --from-literal=current=k1 --from-literal=kek.k1="$(hex16)" >/dev/null
k -n "$gw_ns" create secret generic agencies --from-literal=mof="$(hex16)" >/dev/null
gw_values="$(mktemp)"
cat >"$gw_values" <<EOF
image: {repository: registry.gov.cn/govcloud/govcloud-s3-gateway, tag: "$version"}
replicas: 2
resources: {requests: {cpu: 20m, memory: 32Mi}, limits: {cpu: 500m, memory: 256Mi}}
upstream: {endpoint: "http://store.invalid:9000", accessKey: gateway, secretName: store}
kekSecretName: kek
agencySecretName: agencies
agencies:
  - {name: mof, accessKey: GWMOF0001, bucket: govcloud-backups, prefix: mof/}
nodeSelector: {govcloud.io/node-kind: real}
tolerations:
  - {key: govcloud.io/node-kind, operator: Equal, value: real, effect: NoSchedule}
EOF
gw_helm() { bash "$here/chart.sh" helm "$@"; }
t0=$(now_ms)
gw_helm install "$gw_release" charts/govcloud-s3-gateway -n "$gw_ns" -f "$gw_values" --wait --timeout 3m >/dev/null ||
  fail "the gateway chart did not install: $(k -n "$gw_ns" get pods -o wide 2>&1)"
rm -f "$gw_values"
gw_ready() {
  [ "$(k -n "$gw_ns" get pods -l app.kubernetes.io/name=govcloud-s3-gateway \
    -o 'jsonpath={range .items[*]}{.spec.nodeName} {.status.containerStatuses[0].ready}{"\n"}{end}' |
    grep -c '^dc1-real true$')" -ge 2 ]
}
poll "two Ready gateway pods on dc1-real" gw_ready
log "gateway chart: two pods Ready on dc1-real in $(( ($(now_ms) - t0) / 1000 )) s"
out="$(gw_helm test "$gw_release" -n "$gw_ns" --logs --timeout 2m 2>&1)" || fail "the gateway's helm test failed: $out"
grep -q "Phase: *Succeeded" <<<"$out" && grep -q "refuses an unsigned request" <<<"$out" || fail "gateway helm test: $out"
log "gateway helm test: $(grep -m1 'refuses an unsigned request' <<<"$out")"
gw_helm uninstall "$gw_release" -n "$gw_ns" --wait >/dev/null 2>&1 || true
k delete namespace "$gw_ns" --wait=false >/dev/null 2>&1 || true

# The hub and dc2, registered for this run; dc2 through the real node's forward (the pod
# cannot reach the host's 127.0.0.1).
dc2_port="$(sed -n 's/^P_API=//p' "$TESTBED_STATE/dc2/cluster.env")"
(umask 077; sed "s#server: https://127.0.0.1:$dc2_port#server: https://10.87.1.1:$dc2_port#" \
  "$TESTBED_STATE/dc2/kubeconfig" >"$values.dc2")
k -n "$ns" create secret generic "$run-member" --from-file=kubeconfig="$values.dc2" >/dev/null
rm -f "$values.dc2"
k apply -f - >/dev/null <<EOF
apiVersion: govcloud.io/v1alpha1
kind: DataCenterCluster
metadata: {name: $run-member, labels: {govcloud.io/e2e: "$run"}}
spec: {region: e2e, zone: external, maxSecurityLevel: 3, kubeconfigSecret: {name: $run-member}}
EOF

agency() {
  local name="$1" code
  code="$(python3 - <<'PY'
import random
chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
w = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
body = "11" + "110000" + "".join(random.choice(chars[:10]) for _ in range(9))
body = body[:17]
c = 31 - sum(chars.index(x) * w[i] for i, x in enumerate(body)) % 31
print(body + chars[0 if c == 31 else c])
PY
)"
  k apply -f - >/dev/null <<EOF
apiVersion: govcloud.io/v1alpha1
kind: AgencyCloud
metadata: {name: $name, labels: {govcloud.io/e2e: "$run"}}
spec:
  agency: {displayName: 端到端测试 $name, shortName: $name, creditCode: "$code", adminLevel: municipal,
           contact: {name: 测试, email: ops@example.gov.cn}}
  securityLevel: 2
  zone: external
  environments: [{name: prod, quota: {cpu: "2", memory: 2Gi}}]
  owners: [{kind: Group, name: $name-owners}]
  allowedRegistries: [registry.gov.cn]
  placement: {region: e2e}
  deletionPolicy: Delete
EOF
}
agency_ready() {
  [ "$(k get agencycloud "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

t0=$(now_ms)
agency "$run-a"
poll "AgencyCloud $run-a Ready (placed on dc2 by the operator in its pod)" agency_ready "$run-a"
first_ms=$(( $(now_ms) - t0 ))
"$KUBECTL" --kubeconfig "$TESTBED_STATE/dc2/kubeconfig" get namespace "$run-a-prod" >/dev/null ||
  fail "namespace $run-a-prod is not on dc2"
log "agency $run-a Ready on dc2 in $((first_ms / 1000)).$(( (first_ms % 1000) / 100 )) s"

holder="$(k -n "$ns" get lease govcloud-operator -o 'jsonpath={.spec.holderIdentity}')"
k -n "$ns" get pod "$holder" >/dev/null 2>&1 || fail "the Lease holder '$holder' is not an operator pod"
log "leader: $holder; killing its pod"
t0=$(now_ms)
k -n "$ns" delete pod "$holder" --grace-period=0 --force >/dev/null 2>&1
new_leader() {
  local h
  h="$(k -n "$ns" get lease govcloud-operator -o 'jsonpath={.spec.holderIdentity}')"
  [ -n "$h" ] && [ "$h" != "$holder" ]
}
poll "another replica holding the Lease" new_leader
takeover_ms=$(( $(now_ms) - t0 ))
agency "$run-b"
poll "AgencyCloud $run-b Ready after the takeover" agency_ready "$run-b"
converge_ms=$(( $(now_ms) - t0 ))
new="$(k -n "$ns" get lease govcloud-operator -o 'jsonpath={.spec.holderIdentity}')"
log "leader takeover: $new holds the Lease $((takeover_ms / 1000)).$(( (takeover_ms % 1000) / 100 )) s after $holder was killed; a new agency Ready $((converge_ms / 1000)).$(( (converge_ms % 1000) / 100 )) s after the kill"

# The examples, converged by the operator in its pod: the clusters of examples/clusters.yaml
# (the hub, and dc2 through the node's forward as guizhou-external) and the two agencies of
# examples/agencies/.
log "the examples: clusters and agencies (examples/clusters.yaml, examples/agencies/)"
(umask 077; sed "s#server: https://127.0.0.1:$dc2_port#server: https://10.87.1.1:$dc2_port#" \
  "$TESTBED_STATE/dc2/kubeconfig" >"$values.dc2")
k -n "$ns" create secret generic dc2-kubeconfig --from-file=kubeconfig="$values.dc2" \
  --dry-run=client -o yaml | k apply -f - >/dev/null
rm -f "$values.dc2"
examples_applied=true
k apply -f examples/clusters.yaml >/dev/null
k apply -f examples/agencies/ >/dev/null
t0=$(now_ms)
for a in mof zj-bigdata; do poll "example AgencyCloud $a Ready" agency_ready "$a"; done
examples_ms=$(( $(now_ms) - t0 ))
k get agencycloud mof zj-bigdata
log "the examples' agencies Ready $((examples_ms / 1000)).$(( (examples_ms % 1000) / 100 )) s after they were applied"

mkdir -p target/reliability
printf '{"takeover_seconds": %s, "takeover_converged_seconds": %s, "first_agency_seconds": %s, "target_seconds": %s}\n' \
  "$(awk "BEGIN{print $takeover_ms/1000}")" "$(awk "BEGIN{print $converge_ms/1000}")" \
  "$(awk "BEGIN{print $first_ms/1000}")" "$target" >target/reliability/operator-image.json
[ "$takeover_ms" -le $((target * 1000)) ] || fail "leader takeover took $((takeover_ms / 1000)) s (target <= $target s)"
log "PASS"
