#!/usr/bin/env bash
# Local multi-cluster testbed: N real Kubernetes control planes ("data centers"
# dc1, dc2, ...) on 127.0.0.1, each with its own etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and KWOK (fake nodes, fake pods).
# No containers, no downloads: binaries come from hack/build-testbed.sh.
#
#   hack/testbed.sh up                  build if needed, start (or reuse) all clusters
#   hack/testbed.sh down                stop the processes this script started, remove state
#   hack/testbed.sh status              clusters, API URLs, kubeconfigs, /readyz, processes
#   hack/testbed.sh env                 shell exports (eval "$(hack/testbed.sh env)")
#   hack/testbed.sh stop-cluster dcN    stop dcN's kube-apiserver (and its controller-manager and
#                                       scheduler) to simulate an unreachable member; etcd, kwok
#                                       and all state stay
#   hack/testbed.sh start-cluster dcN   start them again (and anything else missing), wait for
#                                       /readyz and Ready nodes
#   hack/testbed.sh pin-namespace dcN NS  run every pod of namespace NS on dcN's real node
#
# Real nodes (hack/realnode.sh): clusters dc1..dc$TESTBED_REAL_NODES also get one real node
# each (containerd + runc + CNI, kubelet, kube-proxy, kube-router's NetworkPolicy firewall)
# in a network namespace of its own, tainted so that only pods that ask for it run there;
# images come from the local registry (hack/registry.sh, hack/images.sh).
#
# Environment:
#   TESTBED_CLUSTERS     number of clusters (default 2)
#   TESTBED_NODES        KWOK nodes per cluster (default 3)
#   TESTBED_REAL_NODES   clusters dc1..dcN get a real node (default 2: the hub and one member;
#                        0: KWOK nodes only, no root needed)
#   TESTBED_NODE_CPU     node capacity/allocatable cpu (default 32)
#   TESTBED_NODE_MEMORY  node memory (default 128Gi)
#   TESTBED_NODE_PODS    node pods (default 110)
#   TESTBED_STATE        state dir (default ${GOVCLOUD_CACHE:-~/.cache/govcloud}/testbed)
#   TESTBED_BASE_PORT    first port (default 16000, below the kernel's ephemeral range 32768+ so an outgoing connection never holds it); cluster i uses base+100*(i-1)+k:
#                          k=0 etcd client, 1 etcd peer, 2 kube-apiserver (https),
#                          3 kube-controller-manager (https), 4 kube-scheduler (https),
#                          5 kwok server/metrics (http)
#   TESTBED_TIMEOUT      seconds to wait for each readiness step (default 120)
#   TESTBED_MUTATING_POLICIES=0  leave MutatingAdmissionPolicy off (beta and off by default in
#                        Kubernetes 1.34, GA from 1.36; on by default here)
#   TESTBED_PROFILING=1  serve /debug/pprof on the API servers (off by default, as the CIS benchmark
#                        asks; for CPU profiles of the API servers under the benchmark)
#
# Everything listens on 127.0.0.1 only. Processes are tracked by PID files in
# $TESTBED_STATE/dcN/pids and are only ever stopped by those PIDs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"
# shellcheck source=hack/realnode.sh
source "$here/realnode.sh"

TESTBED_CLUSTERS="${TESTBED_CLUSTERS:-2}"
TESTBED_NODES="${TESTBED_NODES:-3}"
TESTBED_NODE_CPU="${TESTBED_NODE_CPU:-32}"
TESTBED_NODE_MEMORY="${TESTBED_NODE_MEMORY:-128Gi}"
TESTBED_NODE_PODS="${TESTBED_NODE_PODS:-110}"
TESTBED_STATE="${TESTBED_STATE:-$GOVCLOUD_CACHE/testbed}"
TESTBED_BASE_PORT="${TESTBED_BASE_PORT:-16000}"
TESTBED_TIMEOUT="${TESTBED_TIMEOUT:-120}"

KUBECTL="$K8S_BIN/kubectl"
SERVICE_CIDR="10.96.0.0/16"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
MARKER=".govcloud-testbed"

log() { printf '[testbed] %s\n' "$*"; }
err() { printf '[testbed] ERROR: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

now_ms() { date +%s%3N; }
# Seconds since $1 (milliseconds timestamp), e.g. "3.4s".
since() { local d=$(( $(now_ms) - $1 )); printf '%d.%ds' $((d / 1000)) $(((d % 1000) / 100)); }

# ---------------------------------------------------------------------------
# Cluster layout

cluster_dir() { echo "$TESTBED_STATE/$1"; }

# Loads the ports of cluster $1 (dcN) into P_ETCD, P_PEER, P_API, P_KCM, P_SCHED, P_KWOK.
# The ports are fixed when the cluster is first created (recorded in cluster.env).
load_ports() {
  local name="$1" dir; dir="$(cluster_dir "$1")"
  if [ -f "$dir/cluster.env" ]; then
    # shellcheck disable=SC1091
    source "$dir/cluster.env"
    return 0
  fi
  local i="${name#dc}" base
  base=$((TESTBED_BASE_PORT + 100 * (i - 1)))
  P_ETCD=$base; P_PEER=$((base + 1)); P_API=$((base + 2))
  P_KCM=$((base + 3)); P_SCHED=$((base + 4)); P_KWOK=$((base + 5))
}

save_ports() {
  local dir; dir="$(cluster_dir "$1")"
  cat >"$dir/cluster.env" <<EOF
P_ETCD=$P_ETCD
P_PEER=$P_PEER
P_API=$P_API
P_KCM=$P_KCM
P_SCHED=$P_SCHED
P_KWOK=$P_KWOK
EOF
}

# Existing cluster names in the state dir, in numeric order.
existing_clusters() {
  [ -d "$TESTBED_STATE" ] || return 0
  local d
  for d in "$TESTBED_STATE"/dc*/; do
    [ -d "$d" ] || continue
    d="${d%/}"; d="${d##*/}"
    if [[ "$d" =~ ^dc[0-9]+$ ]]; then echo "${d#dc}"; fi
  done | sort -n | sed 's/^/dc/'
}

validate_name() {
  [[ "${1:-}" =~ ^dc[1-9][0-9]*$ ]] || die "expected a cluster name like dc1, got '${1:-}'"
}

# ---------------------------------------------------------------------------
# Processes (PID files only; never by name)

# True if the PID in pid file $1 is alive and is one of ours: its command line
# mentions the cluster directory $2 (guards against PID reuse).
pid_alive() {
  local pf="$1" dir="$2" pid state
  [ -f "$pf" ] || return 1
  pid="$(cat "$pf" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ "$state" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/"
}

component_alive() { pid_alive "$(cluster_dir "$1")/pids/$2.pid" "$(cluster_dir "$1")"; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_component NAME COMPONENT PORT CMD... — detached (own session), logs to
# logs/COMPONENT.log, PID to pids/COMPONENT.pid.
start_component() {
  local name="$1" comp="$2" port="$3"; shift 3
  local dir; dir="$(cluster_dir "$name")"
  local pf="$dir/pids/$comp.pid" logf="$dir/logs/$comp.log"
  if [ -n "$port" ] && port_in_use "$port"; then
    die "$name: cannot start $comp: 127.0.0.1:$port is already in use by a process this script did not start (set TESTBED_BASE_PORT or stop it)"
  fi
  rm -f "$pf"
  printf '\n===== %s starting %s =====\n' "$(date -Is)" "$comp" >>"$logf"
  # The child writes its own PID and execs the component, so the PID is exact.
  setsid -f bash -c 'cd "$1" && echo $$ >"$2.tmp" && mv "$2.tmp" "$2" && shift 2 && exec "$@"' \
    testbed "$dir" "$pf" "$@" >>"$logf" 2>&1 </dev/null
  local deadline=$((SECONDS + 10))
  while [ ! -s "$pf" ]; do
    [ $SECONDS -lt $deadline ] || die "$name: $comp did not start; see $logf"
    sleep 0.05
  done
}

# stop_pidfiles DIR PIDFILE... — TERM, then KILL after a grace period
# (STOP_GRACE, else TESTBED_KILL_GRACE, default 8 seconds).
stop_pidfiles() {
  local dir="$1"; shift
  local pf pids=() pid
  for pf in "$@"; do
    if pid_alive "$pf" "$dir"; then
      pid="$(cat "$pf")"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid:$pf")
    fi
  done
  local grace="${STOP_GRACE:-${TESTBED_KILL_GRACE:-8}}"
  local deadline=$((SECONDS + grace)) left
  while :; do
    left=()
    for pid in "${pids[@]}"; do
      pid_alive "${pid#*:}" "$dir" && left+=("$pid")
    done
    [ ${#left[@]} -gt 0 ] || break
    if [ $SECONDS -ge $deadline ]; then
      for pid in "${left[@]}"; do
        log "$(basename "${pid#*:}" .pid) (pid ${pid%%:*}) still running ${grace}s after TERM: sending KILL"
        kill -KILL "${pid%%:*}" 2>/dev/null || true
      done
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  for pf in "$@"; do rm -f "$pf"; done
}

# wait_for NAME COMPONENT DESCRIPTION CMD... — polls CMD until it succeeds.
# Fails fast if the component's process died; fails at the deadline otherwise.
wait_for() {
  local name="$1" comp="$2" what="$3"; shift 3
  local dir; dir="$(cluster_dir "$name")"
  local logf="$dir/logs/$comp.log" deadline=$((SECONDS + TESTBED_TIMEOUT))
  while ! "$@" >/dev/null 2>&1; do
    if [ -n "$comp" ] && ! component_alive "$name" "$comp"; then
      err "$name: $comp exited while waiting for $what. Last lines of $logf:"
      tail -n 20 "$logf" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      err "$name: timed out after ${TESTBED_TIMEOUT}s waiting for $what; see $logf"
      tail -n 10 "$logf" >&2 || true
      exit 1
    fi
    sleep 0.25
  done
}

# ---------------------------------------------------------------------------
# Certificates and kubeconfigs

OPENSSL_CA_CONF='[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash'

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

# sign_cert PKI NAME SUBJECT EXTENSIONS
sign_cert() {
  local pki="$1" n="$2" subj="$3" ext="$4"
  new_key "$pki/$n.key"
  openssl req -new -key "$pki/$n.key" -subj "$subj" -out "$pki/$n.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$pki/$n.ext"
  openssl x509 -req -in "$pki/$n.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
    -extfile "$pki/$n.ext" -out "$pki/$n.crt" 2>/dev/null
  rm -f "$pki/$n.csr" "$pki/$n.ext"
}

client_ext='basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth'

gen_pki() {
  local name="$1" dir pki
  dir="$(cluster_dir "$name")"; pki="$dir/pki"
  [ -f "$pki/.complete" ] && return 0
  rm -rf "$pki"; mkdir -p "$pki"; chmod 700 "$pki"
  new_key "$pki/ca.key"
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=govcloud-testbed-$name-ca" -days 3650 -sha256 \
    -config <(printf '%s\n' "$OPENSSL_CA_CONF") -extensions v3_ca -out "$pki/ca.crt" 2>/dev/null
  sign_cert "$pki" apiserver "/CN=kube-apiserver" "basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost,$(real_node_sans),IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sign_cert "$pki" admin "/O=system:masters/CN=kubernetes-admin" "$client_ext"
  sign_cert "$pki" kube-controller-manager "/CN=system:kube-controller-manager" "$client_ext"
  sign_cert "$pki" kube-scheduler "/CN=system:kube-scheduler" "$client_ext"
  sign_cert "$pki" kwok "/O=system:masters/CN=kwok-controller" "$client_ext"
  sign_cert "$pki" apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client_ext"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
  chmod 600 "$pki/sa.key"
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  touch "$pki/.complete"
}

# write_kubeconfig OUT CLUSTER SERVER PKI CERTNAME USER
write_kubeconfig() {
  local out="$1" cluster="$2" server="$3" pki="$4" cert="$5" user="$6"
  umask 077
  cat >"$out.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $cluster
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$cert.crt")
    client-key-data: $(base64 -w0 <"$pki/$cert.key")
contexts:
- name: $cluster
  context:
    cluster: $cluster
    user: $user
current-context: $cluster
EOF
  mv "$out.tmp" "$out"
  umask 022
}

gen_kubeconfigs() {
  local name="$1" dir; dir="$(cluster_dir "$name")"
  local server="https://127.0.0.1:$P_API"
  write_kubeconfig "$dir/kubeconfig" "$name" "$server" "$dir/pki" admin "$name-admin"
  local c
  for c in kube-controller-manager kube-scheduler kwok; do
    write_kubeconfig "$dir/etc/$c.kubeconfig" "$name" "$server" "$dir/pki" "$c" "$c"
  done
}

# KWOK: the stock stages from the build cache, plus a node heartbeat (the
# build copies only node/fast and pod/fast). Without heartbeats the node
# lifecycle controller marks nodes NotReady after the grace period and evicts.
write_heartbeat_stage() {
  cat >"$1" <<'EOF'
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat-with-lease
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values:
      - 'True'
  delay:
    durationMilliseconds: 600000
    jitterDurationMilliseconds: 610000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}

      addresses:
      {{ with .status.addresses }}
      {{ YAML . 1 }}
      {{ else }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}
EOF
}

kwok_config_args() {
  local dir="$1" f args=()
  for f in "$KWOK_BIN"/stages/*.yaml; do args+=("--config=$f"); done
  if ! grep -qs 'name: node-heartbeat' "$KWOK_BIN"/stages/*.yaml; then
    write_heartbeat_stage "$dir/etc/node-heartbeat-with-lease.yaml"
    args+=("--config=$dir/etc/node-heartbeat-with-lease.yaml")
  fi
  printf '%s\n' "${args[@]}"
}

# ---------------------------------------------------------------------------
# Health checks

etcd_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$P_ETCD/health" | grep -q '"health":"true"'; }

api_ready() {
  local pki; pki="$(cluster_dir "$1")/pki"
  [ "$(curl -sS --max-time 3 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$P_API/readyz" 2>/dev/null)" = ok ]
}

https_healthz() { [ "$(curl -sSk --max-time 2 "https://127.0.0.1:$1/healthz" 2>/dev/null)" = ok ]; }
http_healthz() { [ "$(curl -sS --max-time 2 "http://127.0.0.1:$1/healthz" 2>/dev/null)" = ok ]; }

kc() { "$KUBECTL" --kubeconfig "$(cluster_dir "$KC_CLUSTER")/kubeconfig" --request-timeout=10s "$@"; }

default_ns_ready() {
  KC_CLUSTER="$1" kc get namespace default -o name && KC_CLUSTER="$1" kc -n default get serviceaccount default -o name
}

# All testbed nodes Ready and without taints (the node lifecycle controller
# removes node.kubernetes.io/not-ready once it sees them Ready).
nodes_ready() {
  local out
  out="$(KC_CLUSTER="$1" kc get nodes -l type=kwok -o \
    'jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.spec.taints}{"\n"}{end}')" || return 1
  [ "$(grep -c . <<<"$out")" -ge "$TESTBED_NODES" ] || return 1
  ! grep -qv ' True $' <<<"$out"
}

cluster_running() {
  local name="$1" c
  for c in "${COMPONENTS[@]}"; do component_alive "$name" "$c" || return 1; done
  api_ready "$name"
}

# ---------------------------------------------------------------------------
# Nodes

apply_nodes() {
  local name="$1" i node manifest=""
  for i in $(seq 1 "$TESTBED_NODES"); do
    node="$name-node-$i"
    manifest+="---
apiVersion: v1
kind: Node
metadata:
  name: $node
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    type: kwok
    kubernetes.io/hostname: $node
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node.kubernetes.io/instance-type: kwok
"
  done
  KC_CLUSTER="$name" kc apply -f - <<<"$manifest" >/dev/null
  local res="{\"cpu\":\"$TESTBED_NODE_CPU\",\"memory\":\"$TESTBED_NODE_MEMORY\",\"pods\":\"$TESTBED_NODE_PODS\"}"
  for i in $(seq 1 "$TESTBED_NODES"); do
    KC_CLUSTER="$name" kc patch node "$name-node-$i" --subresource=status --type=merge \
      -p "{\"status\":{\"capacity\":$res,\"allocatable\":$res}}" >/dev/null
  done
}

# ---------------------------------------------------------------------------
# Bring one cluster up (starts whatever is not running; idempotent)

ensure_cluster() {
  local name="$1" t0; t0="$(now_ms)"
  local dir; dir="$(cluster_dir "$name")"
  mkdir -p "$dir"/{logs,pids,etc,etcd}
  chmod 700 "$dir/etcd"
  load_ports "$name"
  save_ports "$name"

  if [ -f "$dir/pki/.complete" ] && cluster_running "$name"; then
    log "$name: already running (reused) — https://127.0.0.1:$P_API"
    if real_node_enabled "$name"; then ensure_real_node "$name"; fi
    return 0
  fi
  gen_pki "$name"
  gen_kubeconfigs "$name"

  local pki="$dir/pki" etc="$dir/etc"
  # Audit only what service accounts of the operator's namespace do (metadata: verb,
  # resource, name): hack/check-rbac.sh compares it with the chart's ClusterRole.
  cat >"$etc/audit-policy.yaml" <<'AUDIT'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts:govcloud-system"]
  - level: None
AUDIT
  if ! component_alive "$name" etcd; then
    start_component "$name" etcd "$P_ETCD" "$ETCD_BIN/etcd" \
      --name="$name" --data-dir="$dir/etcd" \
      --listen-client-urls="http://127.0.0.1:$P_ETCD" --advertise-client-urls="http://127.0.0.1:$P_ETCD" \
      --listen-peer-urls="http://127.0.0.1:$P_PEER" --initial-advertise-peer-urls="http://127.0.0.1:$P_PEER" \
      --initial-cluster="$name=http://127.0.0.1:$P_PEER" --initial-cluster-state=new \
      --unsafe-no-fsync --log-level=warn
  fi
  wait_for "$name" etcd "etcd /health on 127.0.0.1:$P_ETCD" etcd_healthy
  log "$name: etcd up on 127.0.0.1:$P_ETCD ($(since "$t0"))"

  # MutatingAdmissionPolicy is beta (off by default) in Kubernetes 1.34 and GA from 1.36;
  # on here as on a current cluster (TESTBED_MUTATING_POLICIES=0: off, as on a default 1.34).
  local mutating_policy_flags=()
  if [ "${TESTBED_MUTATING_POLICIES:-1}" = 1 ]; then
    mutating_policy_flags=(--feature-gates=MutatingAdmissionPolicy=true
      --runtime-config=admissionregistration.k8s.io/v1beta1=true)
  fi
  if ! component_alive "$name" kube-apiserver; then
    start_component "$name" kube-apiserver "$P_API" "$K8S_BIN/kube-apiserver" \
      --etcd-servers="http://127.0.0.1:$P_ETCD" \
      --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$P_API" \
      --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
      --client-ca-file="$pki/ca.crt" \
      --service-cluster-ip-range="$SERVICE_CIDR" \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
      --authorization-mode=Node,RBAC \
      --enable-admission-plugins=NodeRestriction,PodNodeSelector,PodTolerationRestriction \
      --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
      --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
      --kubelet-preferred-address-types=InternalIP,Hostname \
      --endpoint-reconciler-type=none \
      --allow-privileged=true \
      --audit-policy-file="$etc/audit-policy.yaml" --audit-log-path="$dir/logs/audit.log" \
      --audit-log-maxsize=500 --audit-log-maxbackup=2 \
      "${mutating_policy_flags[@]}" \
      --profiling="$([ "${TESTBED_PROFILING:-0}" = 1 ] && echo true || echo false)"
  fi
  wait_for "$name" kube-apiserver "https://127.0.0.1:$P_API/readyz" api_ready "$name"
  log "$name: kube-apiserver ready on https://127.0.0.1:$P_API ($(since "$t0"))"

  if ! component_alive "$name" kube-controller-manager; then
    start_component "$name" kube-controller-manager "$P_KCM" "$K8S_BIN/kube-controller-manager" \
      --kubeconfig="$etc/kube-controller-manager.kubeconfig" \
      --authentication-kubeconfig="$etc/kube-controller-manager.kubeconfig" \
      --authorization-kubeconfig="$etc/kube-controller-manager.kubeconfig" \
      --bind-address=127.0.0.1 --secure-port="$P_KCM" --cert-dir="$dir/etc/kcm-serving" \
      --leader-elect=false --controllers='*' --cluster-name="$name" \
      --use-service-account-credentials \
      --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
      --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
      --service-cluster-ip-range="$SERVICE_CIDR" \
      --kube-api-qps=100 --kube-api-burst=200 \
      --profiling=false
  fi
  if ! component_alive "$name" kube-scheduler; then
    start_component "$name" kube-scheduler "$P_SCHED" "$K8S_BIN/kube-scheduler" \
      --kubeconfig="$etc/kube-scheduler.kubeconfig" \
      --authentication-kubeconfig="$etc/kube-scheduler.kubeconfig" \
      --authorization-kubeconfig="$etc/kube-scheduler.kubeconfig" \
      --bind-address=127.0.0.1 --secure-port="$P_SCHED" --cert-dir="$dir/etc/scheduler-serving" \
      --leader-elect=false --profiling=false
  fi
  if ! component_alive "$name" kwok; then
    local kwok_args=()
    mapfile -t kwok_args < <(kwok_config_args "$dir")
    start_component "$name" kwok "$P_KWOK" "$KWOK_BIN/kwok" \
      --kubeconfig="$etc/kwok.kubeconfig" \
      "${kwok_args[@]}" \
      --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
      --node-lease-duration-seconds=40 \
      --cidr=10.244.0.0/16 --node-ip=127.0.0.1 \
      --server-address="127.0.0.1:$P_KWOK"
  fi

  apply_nodes "$name"

  wait_for "$name" kube-controller-manager "kube-controller-manager /healthz on 127.0.0.1:$P_KCM" https_healthz "$P_KCM"
  wait_for "$name" kube-scheduler "kube-scheduler /healthz on 127.0.0.1:$P_SCHED" https_healthz "$P_SCHED"
  wait_for "$name" kwok "kwok /healthz on 127.0.0.1:$P_KWOK" http_healthz "$P_KWOK"
  log "$name: controller-manager, scheduler, kwok up ($(since "$t0"))"
  wait_for "$name" kube-controller-manager "namespace default and its service account" default_ns_ready "$name"
  wait_for "$name" kwok "$TESTBED_NODES nodes Ready and untainted" nodes_ready "$name"
  log "$name: $TESTBED_NODES nodes Ready (cpu=$TESTBED_NODE_CPU memory=$TESTBED_NODE_MEMORY pods=$TESTBED_NODE_PODS)"
  if real_node_enabled "$name"; then
    ensure_real_node "$name"
  fi
  log "$name: ready in $(since "$t0") — KUBECONFIG=$dir/kubeconfig"
}

# ---------------------------------------------------------------------------
# Commands

ensure_binaries() {
  local b missing=0
  for b in "$K8S_BIN/kube-apiserver" "$K8S_BIN/kube-controller-manager" "$K8S_BIN/kube-scheduler" \
           "$K8S_BIN/kubectl" "$ETCD_BIN/etcd" "$KWOK_BIN/kwok"; do
    [ -x "$b" ] || missing=1
  done
  compgen -G "$KWOK_BIN/stages/*.yaml" >/dev/null || missing=1
  if [ "${TESTBED_REAL_NODES:-2}" -gt 0 ]; then
    for b in "$K8S_BIN/kubelet" "$K8S_BIN/kube-proxy" "$KUBE_ROUTER_BIN/kube-router" \
      "$LOCAL_PATH_BIN/local-path-provisioner"; do
      [ -x "$b" ] || missing=1
    done
  fi
  if [ "$missing" = 1 ]; then
    log "control-plane binaries missing; running hack/build-testbed.sh"
    "$here/build-testbed.sh"
  fi
  for b in openssl curl setsid base64; do
    command -v "$b" >/dev/null || die "$b is required"
  done
}

check_state_dir() {
  case "$TESTBED_STATE" in
    ""|/|"$HOME"|"$HOME/") die "refusing to use TESTBED_STATE='$TESTBED_STATE'";;
  esac
  if [ -d "$TESTBED_STATE" ] && [ ! -f "$TESTBED_STATE/$MARKER" ] && [ -n "$(ls -A "$TESTBED_STATE")" ]; then
    die "$TESTBED_STATE exists, is not empty and is not a testbed state dir (no $MARKER)"
  fi
}

cmd_up() {
  [[ "$TESTBED_CLUSTERS" =~ ^[1-9][0-9]*$ ]] || die "TESTBED_CLUSTERS must be a positive integer"
  [[ "$TESTBED_NODES" =~ ^[0-9]+$ ]] || die "TESTBED_NODES must be a number"
  [[ "${TESTBED_REAL_NODES:-2}" =~ ^[0-9]+$ ]] || die "TESTBED_REAL_NODES must be a number"
  local t0; t0="$(now_ms)"
  ensure_binaries
  check_state_dir
  mkdir -p "$TESTBED_STATE"
  touch "$TESTBED_STATE/$MARKER"
  log "state: $TESTBED_STATE"
  if [ "${TESTBED_REAL_NODES:-2}" -gt 0 ]; then
    # The real nodes pull registry.gov.cn/... from the local registry.
    REGISTRY_STATE="$TESTBED_STATE/registry" bash "$here/registry.sh" up
    save_host_sysctls
  fi
  local i pids=() failed=0
  for i in $(seq 1 "$TESTBED_CLUSTERS"); do
    ensure_cluster "dc$i" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { err "dc$((i + 1)): failed (logs in $(cluster_dir "dc$((i + 1))")/logs)"; failed=1; }
  done
  [ "$failed" = 0 ] || exit 1
  log "$TESTBED_CLUSTERS cluster(s) ready in $(since "$t0")"
  cmd_status
  echo
  log "use: eval \"\$(hack/testbed.sh env)\""
}

# Exit status: 0 when every cluster answers /readyz, 1 otherwise (or when there is none).
cmd_status() {
  local name any=0 dir c st ready all_ready=1
  for name in $(existing_clusters); do
    any=1
    dir="$(cluster_dir "$name")"
    load_ports "$name"
    ready="no"
    [ -f "$dir/pki/admin.crt" ] && api_ready "$name" && ready="ok"
    [ "$ready" = ok ] || all_ready=0
    st=""
    for c in "${COMPONENTS[@]}"; do
      if component_alive "$name" "$c"; then st+=" $c=$(cat "$dir/pids/$c.pid")"; else st+=" $c=down"; fi
    done
    printf '%-4s %-24s readyz=%-3s kubeconfig=%s\n' "$name" "https://127.0.0.1:$P_API" "$ready" "$dir/kubeconfig"
    printf '     ports: etcd=%s peer=%s apiserver=%s controller-manager=%s scheduler=%s kwok=%s\n' \
      "$P_ETCD" "$P_PEER" "$P_API" "$P_KCM" "$P_SCHED" "$P_KWOK"
    printf '     pids: %s\n' "${st# }"
    real_node_status "$name"
  done
  [ "$any" = 1 ] || { log "no testbed in $TESTBED_STATE (run: hack/testbed.sh up)"; return 1; }
  [ "$all_ready" = 1 ]
}

cmd_env() {
  local name n first=""
  for name in $(existing_clusters); do
    n="${name#dc}"
    [ -n "$first" ] || first="$name"
    printf 'export GOVCLOUD_KUBECONFIG_%s=%q\n' "$n" "$(cluster_dir "$name")/kubeconfig"
  done
  [ -n "$first" ] || die "no testbed in $TESTBED_STATE (run: hack/testbed.sh up)"
  printf 'export GOVCLOUD_TESTBED_CLUSTERS=%q\n' "$(existing_clusters | wc -l)"
  printf 'export GOVCLOUD_KUBECTL=%q\n' "$KUBECTL"
  printf 'export KUBECONFIG=%q\n' "$(cluster_dir "$first")/kubeconfig"
}

stop_cluster_components() {
  local name="$1"; shift
  local dir c pfs=(); dir="$(cluster_dir "$name")"
  for c in "$@"; do pfs+=("$dir/pids/$c.pid"); done
  stop_pidfiles "$dir" "${pfs[@]}"
}

cmd_down() {
  if [ ! -d "$TESTBED_STATE" ]; then log "nothing to stop ($TESTBED_STATE does not exist)"; return 0; fi
  [ -f "$TESTBED_STATE/$MARKER" ] || die "$TESTBED_STATE is not a testbed state dir (no $MARKER); not touching it"
  local name
  # Velero (servers, object stores) and Prometheus started by hack/velero.sh and
  # hack/prometheus.sh keep their PID files in the testbed's state dir, which is
  # removed below: stop them first (by PID), or they would run on with no way to
  # find them.
  if [ -f "$TESTBED_STATE/velero/.govcloud-velero" ]; then
    VELERO_STATE="$TESTBED_STATE/velero" bash "$here/velero.sh" down
  fi
  if [ -f "$TESTBED_STATE/registry/.govcloud-registry" ]; then
    REGISTRY_STATE="$TESTBED_STATE/registry" bash "$here/registry.sh" down
  fi
  if [ -f "$TESTBED_STATE/prometheus/.govcloud-prometheus" ]; then
    PROMETHEUS_STATE="$TESTBED_STATE/prometheus" bash "$here/prometheus.sh" down
  fi
  for name in $(existing_clusters); do
    stop_real_node "$name"
  done
  remove_host_rules
  for name in $(existing_clusters); do
    # Clients first, etcd last, so the API server shuts down cleanly.
    stop_cluster_components "$name" kwok kube-scheduler kube-controller-manager kube-apiserver
    stop_cluster_components "$name" etcd
    log "$name: stopped"
  done
  # Never remove through a live mount (a node's kubelet root and pod volumes are mounts).
  local left
  left="$(awk -v p="$TESTBED_STATE/" 'index($2, p) == 1 {print $2}' /proc/mounts)"
  [ -z "$left" ] || die "mounts are left under $TESTBED_STATE; not removing it (unmount them, then run down again): $(tr '\n' ' ' <<<"$left")"
  rm -rf "$TESTBED_STATE"
  log "removed $TESTBED_STATE"
}

cmd_stop_cluster() {
  local name="${1:-}"; validate_name "$name"
  [ -d "$(cluster_dir "$name")" ] || die "$name does not exist in $TESTBED_STATE"
  # The controller-manager and scheduler go down with the API server: a fresh
  # controller-manager starts its node-health grace period anew on start-cluster;
  # one that kept running through the outage would mark every node NotReady
  # (and taint it) for up to a minute after the API server returns. etcd and
  # kwok keep running (kwok keeps its node leases and renews them at once).
  local t0; t0="$(now_ms)"
  # kube-apiserver drains open watches (kwok's) on TERM; do not wait long for it.
  STOP_GRACE=2 stop_cluster_components "$name" kube-controller-manager kube-scheduler kube-apiserver
  log "$name: kube-apiserver (with controller-manager and scheduler) stopped in $(since "$t0"); etcd and kwok keep running, state kept"
}

cmd_start_cluster() {
  local name="${1:-}"; validate_name "$name"
  [ -d "$(cluster_dir "$name")" ] || die "$name does not exist in $TESTBED_STATE (run: hack/testbed.sh up)"
  ensure_binaries
  ensure_cluster "$name"
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

case "${1:-}" in
  up) cmd_up;;
  down) cmd_down;;
  status) cmd_status;;
  env) cmd_env;;
  stop-cluster) shift; cmd_stop_cluster "$@";;
  start-cluster) shift; cmd_start_cluster "$@";;
  pin-namespace) shift; cmd_pin_namespace "$@";;
  -h|--help|help) usage;;
  *) usage >&2; exit 2;;
esac
