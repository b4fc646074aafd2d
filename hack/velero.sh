#!/usr/bin/env bash
# Velero on the local testbed (hack/testbed.sh): real backups and restores of
# Kubernetes objects into a local S3-compatible object store (servers out of cluster),
# and of volume data on the real nodes (node-agent).
#
#   hack/velero.sh up       build if needed; start (or reuse) one object store per
#                           region and one Velero server per testbed cluster
#   hack/velero.sh down     stop the processes this script started; remove the
#                           object stores' data and Velero's state dir
#   hack/velero.sh status   object stores, Velero servers, BackupStorageLocations
#                           (exit 0 when every process runs and every BSL is Available)
#   hack/velero.sh env      shell exports (eval "$(hack/velero.sh env)")
#
# What this sets up (decisions):
#   - Regions: the project maps a DataCenterCluster to a region (spec.region;
#     examples/clusters.yaml: beijing, guizhou). VELERO_REGIONS lists them
#     (default "beijing guizhou"); testbed cluster dcN's home region is the
#     ((N-1) mod count)-th one (dc1 beijing, dc2 guizhou, dc3 beijing), or set
#     VELERO_CLUSTER_REGIONS="dc1=beijing dc2=guizhou ...".
#   - Object store: one s3s-fs process per region on 127.0.0.1, port
#     VELERO_BASE_PORT + i (i = 0, 1, ... in VELERO_REGIONS order: 17000
#     beijing, 17001 guizhou), data in $VELERO_STATE/s3/<region> (a bucket is
#     a directory there, an object a file), fixed dev keys VELERO_ACCESS_KEY /
#     VELERO_SECRET_KEY. One bucket per region: velero-<region>.
#   - Every cluster gets a BackupStorageLocation for every region, named
#     region-<region> (provider aws, bucket velero-<region>, no prefix, config
#     region=us-east-1, s3ForcePathStyle="true", s3Url=http://127.0.0.1:PORT,
#     labels app.kubernetes.io/managed-by=govcloud-testbed and
#     govcloud.io/region=<region>). The home region's
#     BSL is the default (spec.default and --default-backup-storage-location);
#     the other region is the off-site copy. No prefix: a region's bucket is
#     shared by all clusters, so Velero's backup sync makes every backup in it
#     appear (as a Backup object) on every cluster after at most
#     VELERO_BACKUP_SYNC_PERIOD — what a restore in another data center needs.
#     Backup names must therefore be unique across clusters.
#   - Credentials: the Secret velero/cloud-credentials (key "cloud", an AWS
#     credentials file) is created as "velero install" would, and the same file
#     is the server's AWS_SHARED_CREDENTIALS_FILE. The testbed BSLs do NOT set
#     spec.credential: Velero 1.17 rewrites that credential file (truncate +
#     write, one shared path) on every use, and concurrent controllers then read
#     an empty file ("failed to refresh cached credentials, no EC2 IMDS role
#     found") now and then. BSLs created by others may still use spec.credential.
#   - Velero server runs out of cluster, one per cluster: --kubeconfig dcN,
#     --namespace velero, --plugin-dir with velero-plugin-for-aws only,
#     --metrics-address 127.0.0.1:(VELERO_BASE_PORT + 100*N) (17100, 17200, ...),
#     --profiler-address "" (off; its default is localhost:6060 for every
#     server), --uploader-type kopia (the default; file-system backups of
#     volumes on the real nodes, below),
#     --default-volumes-to-fs-backup=false, no --features (no CSI). The binary
#     is built with controller-runtime's extra metrics server (default
#     0.0.0.0:8080) off (hack/build-velero.sh). TMPDIR is per server: Velero
#     writes BSL credentials to $TMPDIR/credentials/<namespace>/. Environment:
#     AWS_REQUEST_CHECKSUM_CALCULATION / AWS_RESPONSE_CHECKSUM_VALIDATION =
#     when_required, AWS_SHARED_CREDENTIALS_FILE (for BSLs without
#     spec.credential, as the in-cluster install mounts it), AWS_EC2_METADATA_DISABLED.
#   - A placeholder Deployment velero/velero with replicas: 0 (it never runs a
#     pod): Velero's built-in pod restore action (velero.io/pod-volume-restore)
#     reads the server image from the Deployment named "velero" in its
#     namespace and fails without it — every Restore that contains a pod ends
#     PartiallyFailed with 'deployments.apps "velero" not found' and restores
#     nothing.
#   - The placeholder's image and the ConfigMap fs-restore-action-config (labels
#     velero.io/plugin-config, velero.io/pod-volume-restore=RestoreItemAction) are
#     VELERO_IMAGE (registry.gov.cn/govcloud/velero:$VELERO_VERSION, hack/images.sh):
#     the restore-wait init container of restored pods runs /velero-restore-helper.
#   - File-system backups (pod volumes, kopia) on the real nodes (hack/realnode.sh):
#     on every cluster with a node labelled govcloud.io/node-kind=real, the
#     node-agent DaemonSet of "velero install --use-node-agent" (name node-agent,
#     pod labels name/role=node-agent: the server looks for a Running role=node-agent
#     pod on the volume's node) with the ServiceAccount velero (cluster-admin), for
#     the real node only (nodeSelector and toleration govcloud.io/node-kind=real),
#     hostNetwork, privileged, hostPath <kubelet root>/pods -> /host_pods with
#     HostToContainer propagation, the cloud-credentials Secret as
#     AWS_SHARED_CREDENTIALS_FILE, metrics on 127.0.0.1:8085 in the node's network
#     namespace (no other listener). The node's namespace reaches the stores as
#     http://127.0.0.1:PORT, like the servers on the host (TESTBED_HOST_PORTS of
#     hack/realnode.sh). Velero 1.17 moves each volume's data in a pod it creates
#     in this namespace from the DaemonSet's template, on the pod network: the
#     MutatingAdmissionPolicy govcloud-testbed-velero-data-path (pods in this
#     namespace owned by a PodVolumeBackup/PodVolumeRestore) puts them on the node's
#     network. `up` pushes the image when the registry lacks it and waits for the
#     node-agent pods Ready once the pause image is pushed (hack/images.sh --push;
#     hack/test.sh pushes it after this step, the pods start then). Back up volumes
#     with defaultVolumesToFsBackup: true (or the backup.velero.io/backup-volumes
#     annotation) on claims of local-path (`local` volumes: Velero skips hostPath
#     ones). KWOK nodes have no kubelet: pods there have no volume data to back up.
#     CSI snapshots and the data mover are not available; use snapshotVolumes: false.
#   - State (PID files, logs, object data) lives in $TESTBED_STATE/velero.
#     "hack/testbed.sh down" runs "hack/velero.sh down" first when this state
#     is in its default place ($TESTBED_STATE/velero); with VELERO_STATE
#     elsewhere, run "hack/velero.sh down" yourself.
#
# Environment:
#   TESTBED_STATE              testbed state dir (default ${GOVCLOUD_CACHE:-~/.cache/govcloud}/testbed)
#   VELERO_STATE               default $TESTBED_STATE/velero
#   VELERO_NAMESPACE           default velero
#   VELERO_REGIONS             default "beijing guizhou"
#   VELERO_CLUSTER_REGIONS     e.g. "dc1=beijing dc2=guizhou" (default: round robin)
#   VELERO_BASE_PORT           default 17000 (object stores base+i, Velero metrics base+100*N)
#   VELERO_ACCESS_KEY          default govcloud-dev
#   VELERO_SECRET_KEY          default govcloud-dev-secret-key
#   VELERO_BACKUP_SYNC_PERIOD  default 20s (how often a server lists the BSLs' backups)
#   VELERO_STORE_VALIDATION    default 30s (how often a BSL is checked for Available)
#   VELERO_LOG_LEVEL           default info
#   VELERO_TIMEOUT             seconds per readiness step (default 120)
#   VELERO_FS_TIMEOUT          --fs-backup-timeout of the servers (default 15m, Velero's is 4h): how
#                              long a backup or restore waits for one volume's copy. Velero runs
#                              one restore at a time, so a restore whose pod never starts (a
#                              failed drill) would hold up every other restore of the cluster
#                              for hours
#   VELERO_IMAGE               default registry.gov.cn/govcloud/velero:$VELERO_VERSION
#   VELERO_NODE_AGENT_METRICS_PORT  default 8085 (127.0.0.1 in the real node's namespace)
#
# Everything listens on 127.0.0.1 only (the node-agent: 127.0.0.1 of the real node's
# namespace); processes are stopped only by their PID files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

TESTBED_STATE="${TESTBED_STATE:-$GOVCLOUD_CACHE/testbed}"
VELERO_STATE="${VELERO_STATE:-$TESTBED_STATE/velero}"
VELERO_NAMESPACE="${VELERO_NAMESPACE:-velero}"
VELERO_REGIONS="${VELERO_REGIONS:-beijing guizhou}"
VELERO_CLUSTER_REGIONS="${VELERO_CLUSTER_REGIONS:-}"
VELERO_BASE_PORT="${VELERO_BASE_PORT:-17000}"
VELERO_ACCESS_KEY="${VELERO_ACCESS_KEY:-govcloud-dev}"
VELERO_SECRET_KEY="${VELERO_SECRET_KEY:-govcloud-dev-secret-key}"
VELERO_BACKUP_SYNC_PERIOD="${VELERO_BACKUP_SYNC_PERIOD:-20s}"
VELERO_STORE_VALIDATION="${VELERO_STORE_VALIDATION:-30s}"
VELERO_LOG_LEVEL="${VELERO_LOG_LEVEL:-info}"
VELERO_TIMEOUT="${VELERO_TIMEOUT:-120}"
VELERO_FS_TIMEOUT="${VELERO_FS_TIMEOUT:-15m}"
VELERO_IMAGE="${VELERO_IMAGE:-registry.gov.cn/govcloud/velero:$VELERO_VERSION}"
VELERO_NODE_AGENT_METRICS_PORT="${VELERO_NODE_AGENT_METRICS_PORT:-8085}"
REGISTRY_PORT="${REGISTRY_PORT:-15000}"

NAMESPACE="$VELERO_NAMESPACE"
MANAGED_BY=govcloud-testbed
CRED_SECRET=cloud-credentials
S3_REGION=us-east-1
KUBECTL="$K8S_BIN/kubectl"
VELERO="$VELERO_BIN/velero"
PLUGIN_DIR="$VELERO_AWS_PLUGIN_BIN"
S3S_FS="$S3S_FS_BIN/bin/s3s-fs"
MARKER=".govcloud-velero"

log() { printf '[velero] %s\n' "$*"; }
err() { printf '[velero] ERROR: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

now_ms() { date +%s%3N; }
since() { local d=$(( $(now_ms) - $1 )); printf '%d.%ds' $((d / 1000)) $(((d % 1000) / 100)); }

# ---------------------------------------------------------------------------
# Layout

regions() { local r; for r in $VELERO_REGIONS; do echo "$r"; done; }

validate_regions() {
  local r n=0
  for r in $VELERO_REGIONS; do
    # A region is part of a bucket name and of a BSL name (DNS label).
    [[ "$r" =~ ^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$ ]] || die "invalid region '$r' in VELERO_REGIONS"
    n=$((n + 1))
  done
  [ "$n" -ge 1 ] || die "VELERO_REGIONS is empty"
  [ "$n" -le 99 ] || die "too many regions"
}

region_index() {
  local i=0 r
  for r in $VELERO_REGIONS; do
    [ "$r" = "$1" ] && { echo "$i"; return 0; }
    i=$((i + 1))
  done
  return 1
}

s3_port() { echo $((VELERO_BASE_PORT + $(region_index "$1"))); }
bucket() { echo "velero-$1"; }
bsl_name() { echo "region-$1"; }
metrics_port() { echo $((VELERO_BASE_PORT + 100 * ${1#dc})); }

# Home region of cluster dcN.
home_region() {
  local name="$1" kv
  for kv in $VELERO_CLUSTER_REGIONS; do
    if [ "${kv%%=*}" = "$name" ]; then
      region_index "${kv#*=}" >/dev/null || die "VELERO_CLUSTER_REGIONS: ${kv#*=} is not in VELERO_REGIONS"
      echo "${kv#*=}"; return 0
    fi
  done
  local rs=() n="${name#dc}"
  read -r -a rs <<<"$VELERO_REGIONS"
  echo "${rs[$(( (n - 1) % ${#rs[@]} ))]}"
}

# Testbed clusters (dcN directories with a kubeconfig), in numeric order.
clusters() {
  [ -d "$TESTBED_STATE" ] || return 0
  local d
  for d in "$TESTBED_STATE"/dc*/; do
    d="${d%/}"; d="${d##*/}"
    [[ "$d" =~ ^dc[0-9]+$ ]] && [ -f "$TESTBED_STATE/$d/kubeconfig" ] && echo "${d#dc}"
  done | sort -n | sed 's/^/dc/'
}

kubeconfig() { echo "$TESTBED_STATE/$1/kubeconfig"; }
kc() { local c="$1"; shift; "$KUBECTL" --kubeconfig "$(kubeconfig "$c")" --request-timeout=20s "$@"; }

# ---------------------------------------------------------------------------
# Processes (PID files only; never by name)

pidfile() { echo "$VELERO_STATE/pids/$1.pid"; }
logfile() { echo "$VELERO_STATE/logs/$1.log"; }

# True if the PID in pid file $1 is alive and its command line contains $2
# (guards against PID reuse).
pid_alive() {
  local pf="$1" needle="$2" pid state
  [ -f "$pf" ] || return 1
  pid="$(cat "$pf" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ "$state" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle"
}

# What identifies each process in its command line (arguments are joined by
# spaces, each followed by one: the trailing space makes "dc1" not match "dc10").
s3_needle() { echo "$VELERO_STATE/s3/$1 "; }
velero_needle() { echo "--kubeconfig=$(kubeconfig "$1") --namespace=$NAMESPACE "; }

s3_alive() { pid_alive "$(pidfile "s3-$1")" "$(s3_needle "$1")"; }
velero_alive() { pid_alive "$(pidfile "velero-$1")" "$(velero_needle "$1")"; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_process NAME PORT [ENV=VAL...] -- CMD... — detached (own session), logs
# to logs/NAME.log, PID to pids/NAME.pid (the child writes its own PID, then execs).
start_process() {
  local name="$1" port="$2"; shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  local pf logf; pf="$(pidfile "$name")"; logf="$(logfile "$name")"
  if port_in_use "$port"; then
    die "cannot start $name: 127.0.0.1:$port is already in use by a process this script did not start (set VELERO_BASE_PORT or stop it)"
  fi
  rm -f "$pf"
  printf '\n===== %s starting %s =====\n' "$(date -Is)" "$name" >>"$logf"
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  setsid -f env "${envs[@]}" bash -c 'cd "$1" && echo $$ >"$2.tmp" && mv "$2.tmp" "$2" && shift 2 && exec "$@"' \
    velero-sh "$VELERO_STATE" "$pf" "$@" >>"$logf" 2>&1 </dev/null
  local deadline=$((SECONDS + 10))
  while [ ! -s "$pf" ]; do
    [ $SECONDS -lt $deadline ] || die "$name did not start; see $logf"
    sleep 0.05
  done
}

# stop_process NAME NEEDLE — TERM, then KILL after VELERO_KILL_GRACE (default 10) seconds.
stop_process() {
  local name="$1" needle="$2" pf pid
  pf="$(pidfile "$name")"
  if pid_alive "$pf" "$needle"; then
    pid="$(cat "$pf")"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + ${VELERO_KILL_GRACE:-10}))
    while pid_alive "$pf" "$needle"; do
      if [ $SECONDS -ge $deadline ]; then
        log "$name (pid $pid) still running after TERM: sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
        break
      fi
      sleep 0.2
    done
    log "$name stopped (pid $pid)"
  fi
  rm -f "$pf"
}

# wait_until WHAT PROCESS-NAME NEEDLE CMD... — polls CMD; fails fast if the process died.
wait_until() {
  local what="$1" name="$2" needle="$3"; shift 3
  local deadline=$((SECONDS + VELERO_TIMEOUT))
  while ! "$@" >/dev/null 2>&1; do
    if ! pid_alive "$(pidfile "$name")" "$needle"; then
      err "$name exited while waiting for $what. Last lines of $(logfile "$name"):"
      tail -n 20 "$(logfile "$name")" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      err "timed out after ${VELERO_TIMEOUT}s waiting for $what; see $(logfile "$name")"
      tail -n 10 "$(logfile "$name")" >&2 || true
      exit 1
    fi
    sleep 0.25
  done
}

# ---------------------------------------------------------------------------
# Object stores

# s3 METHOD REGION PATH [curl args...] — a SigV4-signed request to the region's store.
s3() {
  local method="$1" region="$2" path="$3"; shift 3
  # s3s requires x-amz-content-sha256, which curl's SigV4 does not add by itself.
  curl -sS --max-time 10 -X "$method" --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    --user "$VELERO_ACCESS_KEY:$VELERO_SECRET_KEY" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    "$@" "http://127.0.0.1:$(s3_port "$region")$path"
}

s3_ready() { [ "$(s3 GET "$1" / -o /dev/null -w '%{http_code}')" = 200 ]; }

ensure_store() {
  local region="$1" t0 port data; t0="$(now_ms)"
  port="$(s3_port "$region")"; data="$VELERO_STATE/s3/$region"
  mkdir -p "$data"
  if s3_alive "$region"; then
    log "object store $region: already running (reused) — http://127.0.0.1:$port"
  else
    start_process "s3-$region" "$port" -- "$S3S_FS" --host 127.0.0.1 --port "$port" \
      --access-key "$VELERO_ACCESS_KEY" --secret-key "$VELERO_SECRET_KEY" "$data"
  fi
  wait_until "object store $region on 127.0.0.1:$port" "s3-$region" "$(s3_needle "$region")" s3_ready "$region"
  # Create the bucket unless it exists (HEAD: 200 exists, 404 not).
  local code; code="$(s3 HEAD "$region" "/$(bucket "$region")" -I -o /dev/null -w '%{http_code}')"
  if [ "$code" = 404 ]; then
    code="$(s3 PUT "$region" "/$(bucket "$region")" -o /dev/null -w '%{http_code}')"
  fi
  [ "$code" = 200 ] || die "creating bucket $(bucket "$region") on 127.0.0.1:$port failed (HTTP $code)"
  log "object store $region: http://127.0.0.1:$port bucket $(bucket "$region") data $data ($(since "$t0"))"
}

# ---------------------------------------------------------------------------
# Velero on one cluster

crds_yaml() { "$VELERO" install --crds-only --dry-run -o yaml; }

bsl_manifest() {
  local name="$1" home region
  home="$(home_region "$name")"
  for region in $(regions); do
    cat <<EOF
---
apiVersion: velero.io/v1
kind: BackupStorageLocation
metadata:
  name: $(bsl_name "$region")
  namespace: $NAMESPACE
  labels:
    app.kubernetes.io/managed-by: $MANAGED_BY
    govcloud.io/region: $region
spec:
  provider: aws
  default: $([ "$region" = "$home" ] && echo true || echo false)
  objectStorage:
    bucket: $(bucket "$region")
  config:
    region: $S3_REGION
    s3ForcePathStyle: "true"
    s3Url: http://127.0.0.1:$(s3_port "$region")
EOF
  done
}

# The Deployment Velero's pod restore action reads its image from (see top).
placeholder_deployment() {
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: velero
  namespace: $NAMESPACE
  labels:
    app.kubernetes.io/managed-by: $MANAGED_BY
    component: velero
  annotations:
    govcloud.io/note: "placeholder, never scaled up: velero server runs outside the cluster (hack/velero.sh); Velero reads the server image from this Deployment"
spec:
  replicas: 0
  selector:
    matchLabels:
      deploy: velero
  template:
    metadata:
      labels:
        component: velero
        deploy: velero
    spec:
      containers:
      - name: velero
        image: $VELERO_IMAGE
        command: ["/velero"]
        args: ["server"]
EOF
}

credentials_file() {
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$VELERO_ACCESS_KEY" "$VELERO_SECRET_KEY"
}

bsls_available() {
  local name="$1" out
  out="$(kc "$name" -n "$NAMESPACE" get backupstoragelocations.velero.io -l "app.kubernetes.io/managed-by=$MANAGED_BY" \
    -o 'jsonpath={range .items[*]}{.metadata.name}={.status.phase}{"\n"}{end}')" || return 1
  local region
  for region in $(regions); do
    grep -qx "$(bsl_name "$region")=Available" <<<"$out" || return 1
  done
}

velero_metrics_ok() { curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$(metrics_port "$1")/metrics"; }

ensure_velero() {
  local name="$1" t0 dir home port; t0="$(now_ms)"
  dir="$VELERO_STATE/$name"; home="$(home_region "$name")"; port="$(metrics_port "$name")"
  mkdir -p "$dir/tmp"
  kc "$name" get --raw /readyz >/dev/null 2>&1 || die "$name: API server not ready (run: hack/testbed.sh up)"

  # CRDs (server-side apply: some Velero CRDs are too big for the client-side
  # last-applied annotation), then wait for them to be served.
  crds_yaml | kc "$name" apply --server-side --force-conflicts --field-manager=govcloud-velero -f - >/dev/null
  kc "$name" wait --for=condition=Established --timeout="${VELERO_TIMEOUT}s" \
    -l component=velero crd >/dev/null
  kc "$name" create namespace "$NAMESPACE" --dry-run=client -o yaml | kc "$name" apply -f - >/dev/null
  kc "$name" -n "$NAMESPACE" create secret generic "$CRED_SECRET" --from-file=cloud=<(credentials_file) \
    --dry-run=client -o yaml | kc "$name" apply -f - >/dev/null
  bsl_manifest "$name" | kc "$name" apply -f - >/dev/null
  placeholder_deployment | kc "$name" apply -f - >/dev/null
  credentials_file >"$dir/credentials"; chmod 600 "$dir/credentials"

  if velero_alive "$name"; then
    log "$name: velero server already running (reused), metrics 127.0.0.1:$port"
  else
    start_process "velero-$name" "$port" \
      TMPDIR="$dir/tmp" \
      AWS_SHARED_CREDENTIALS_FILE="$dir/credentials" \
      AWS_REQUEST_CHECKSUM_CALCULATION=when_required \
      AWS_RESPONSE_CHECKSUM_VALIDATION=when_required \
      AWS_EC2_METADATA_DISABLED=true \
      -- "$VELERO" server \
      --kubeconfig="$(kubeconfig "$name")" \
      --namespace="$NAMESPACE" \
      --plugin-dir="$PLUGIN_DIR" \
      --metrics-address="127.0.0.1:$port" \
      --profiler-address= \
      --uploader-type=kopia \
      --fs-backup-timeout="$VELERO_FS_TIMEOUT" \
      --default-volumes-to-fs-backup=false \
      --default-backup-storage-location="$(bsl_name "$home")" \
      --backup-sync-period="$VELERO_BACKUP_SYNC_PERIOD" \
      --store-validation-frequency="$VELERO_STORE_VALIDATION" \
      --log-level="$VELERO_LOG_LEVEL" --log-format=text
  fi
  wait_until "$name: velero metrics on 127.0.0.1:$port" "velero-$name" "$(velero_needle "$name")" velero_metrics_ok "$name"
  wait_until "$name: BackupStorageLocations Available" "velero-$name" "$(velero_needle "$name")" bsls_available "$name"
  if has_real_node "$name"; then ensure_node_agent "$name"; fi
  log "$name: velero ready ($(since "$t0")) — home region $home, BSLs $(for r in $(regions); do printf '%s ' "$(bsl_name "$r")"; done)"
}

# ---------------------------------------------------------------------------
# File-system backups on the real nodes (node-agent)

# Clusters with a real node (hack/realnode.sh labels it govcloud.io/node-kind=real).
has_real_node() { [ -n "$(kc "$1" get nodes -l govcloud.io/node-kind=real -o name 2>/dev/null)" ]; }

# The kubelet root dir of cluster dcN's real node (hack/realnode.sh: --root-dir).
kubelet_root() { echo "$TESTBED_STATE/$1/node/kubelet"; }

# What "velero install --use-node-agent" creates for the node-agent (pkg/install in the
# Velero module: DaemonSet "node-agent", pod labels name=node-agent and role=node-agent —
# the server looks for a Running pod labelled role=node-agent on the backed-up pod's node,
# pkg/nodeagent — and the ServiceAccount velero bound to cluster-admin), for the real node
# only and for this testbed (see the top). Velero 1.17 copies its pod template (image, env,
# volumes, service account) into the pod that moves the data of each PodVolumeBackup and
# PodVolumeRestore; the MutatingAdmissionPolicy puts those pods on the node's network too.
node_agent_manifest() {
  local name="$1"
  cat <<EOF
apiVersion: v1
kind: ServiceAccount
metadata:
  name: velero
  namespace: $NAMESPACE
  labels: {component: velero, app.kubernetes.io/managed-by: $MANAGED_BY}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: velero-$NAMESPACE
  labels: {component: velero, app.kubernetes.io/managed-by: $MANAGED_BY}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {kind: ServiceAccount, name: velero, namespace: $NAMESPACE}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
  namespace: $NAMESPACE
  labels: {component: velero, app.kubernetes.io/managed-by: $MANAGED_BY}
spec:
  selector:
    matchLabels: {name: node-agent}
  template:
    metadata:
      labels: {component: velero, name: node-agent, role: node-agent}
    spec:
      serviceAccountName: velero
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      nodeSelector: {kubernetes.io/os: linux, govcloud.io/node-kind: real}
      tolerations:
      - {key: govcloud.io/node-kind, operator: Equal, value: real, effect: NoSchedule}
      os: {name: linux}
      securityContext: {runAsUser: 0}
      containers:
      - name: node-agent
        image: $VELERO_IMAGE
        imagePullPolicy: IfNotPresent
        command: ["/velero"]
        args: ["node-agent", "server", "--metrics-address=127.0.0.1:$VELERO_NODE_AGENT_METRICS_PORT",
          "--log-level=$VELERO_LOG_LEVEL", "--log-format=text"]
        securityContext: {privileged: true}
        env:
        - name: NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
        - name: VELERO_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - {name: VELERO_SCRATCH_DIR, value: /scratch}
        - {name: AWS_SHARED_CREDENTIALS_FILE, value: /credentials/cloud}
        - {name: AWS_REQUEST_CHECKSUM_CALCULATION, value: when_required}
        - {name: AWS_RESPONSE_CHECKSUM_VALIDATION, value: when_required}
        - {name: AWS_EC2_METADATA_DISABLED, value: "true"}
        volumeMounts:
        - {name: host-pods, mountPath: /host_pods, mountPropagation: HostToContainer}
        - {name: scratch, mountPath: /scratch}
        - {name: cloud-credentials, mountPath: /credentials}
      volumes:
      - name: host-pods
        hostPath: {path: $(kubelet_root "$name")/pods}
      - name: scratch
        emptyDir: {}
      - name: cloud-credentials
        secret: {secretName: $CRED_SECRET, defaultMode: 0444}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: fs-restore-action-config
  namespace: $NAMESPACE
  labels:
    velero.io/plugin-config: ""
    velero.io/pod-volume-restore: RestoreItemAction
    app.kubernetes.io/managed-by: $MANAGED_BY
data:
  image: $VELERO_IMAGE
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata:
  name: govcloud-testbed-velero-data-path
  labels: {app.kubernetes.io/managed-by: $MANAGED_BY}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  matchConditions:
  - name: velero-data-path-pod
    expression: >-
      has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(r,
      r.apiVersion == 'velero.io/v1' && (r.kind == 'PodVolumeBackup' || r.kind == 'PodVolumeRestore'))
  failurePolicy: Fail
  reinvocationPolicy: Never
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >-
        Object{spec: Object.spec{hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet'}}
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: govcloud-testbed-velero-data-path
  labels: {app.kubernetes.io/managed-by: $MANAGED_BY}
spec:
  policyName: govcloud-testbed-velero-data-path
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: $NAMESPACE}
EOF
}

node_agent_ready() {
  local out desired ready updated
  out="$(kc "$1" -n "$NAMESPACE" get daemonset node-agent \
    -o 'jsonpath={.status.desiredNumberScheduled} {.status.numberReady} {.status.updatedNumberScheduled}')" || return 1
  read -r desired ready updated <<<"$out"
  [ "${desired:-0}" -ge 1 ] && [ "$ready" = "$desired" ] && [ "$updated" = "$desired" ]
}

ensure_node_agent() {
  local name="$1" t0; t0="$(now_ms)"
  node_agent_manifest "$name" | kc "$name" apply -f - >/dev/null
  # Every pod's sandbox is the pause image of hack/images.sh --push (hack/test.sh pushes it
  # after this step): without it the pods start once it is pushed.
  if ! image_pushed "registry.gov.cn/govcloud/pause:3.10"; then
    log "$name: node-agent applied; its pods start once hack/images.sh --push has pushed registry.gov.cn/govcloud/pause:3.10 (hack/velero.sh status shows them)"
    return 0
  fi
  local deadline=$((SECONDS + VELERO_TIMEOUT))
  while ! node_agent_ready "$name"; do
    if [ $SECONDS -ge $deadline ]; then
      err "$name: timed out after ${VELERO_TIMEOUT}s waiting for the node-agent pods Ready:"
      kc "$name" -n "$NAMESPACE" get pods -l role=node-agent -o wide >&2 || true
      kc "$name" -n "$NAMESPACE" describe pods -l role=node-agent 2>/dev/null | tail -n 15 >&2 || true
      exit 1
    fi
    sleep 1
  done
  log "$name: node-agent Ready on $(kc "$name" -n "$NAMESPACE" get pods -l role=node-agent \
    -o 'jsonpath={range .items[*]}{.spec.nodeName}{" "}{end}')($(since "$t0"))"
}

# True if image $1 (default the velero image) is in the local registry (hack/registry.sh;
# hack/images.sh pushes them).
image_pushed() {
  local ref="${1:-$VELERO_IMAGE}" repo
  repo="${ref#*/}"
  curl -fsS --max-time 5 -o /dev/null -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://127.0.0.1:$REGISTRY_PORT/v2/${repo%:*}/manifests/${repo##*:}"
}

# ---------------------------------------------------------------------------
# Commands

ensure_binaries() {
  if [ ! -x "$VELERO" ] || [ ! -x "$PLUGIN_DIR/velero-plugin-for-aws" ] || [ ! -x "$S3S_FS" ]; then
    log "velero binaries missing; running hack/build-velero.sh"
    "$here/build-velero.sh"
  fi
  [ -x "$KUBECTL" ] || die "kubectl not found at $KUBECTL (run: hack/testbed.sh up)"
  local b
  for b in curl setsid; do command -v "$b" >/dev/null || die "$b is required"; done
}

check_state_dir() {
  case "$VELERO_STATE" in
    ""|/|"$HOME"|"$HOME/") die "refusing to use VELERO_STATE='$VELERO_STATE'";;
  esac
  if [ -d "$VELERO_STATE" ] && [ ! -f "$VELERO_STATE/$MARKER" ] && [ -n "$(ls -A "$VELERO_STATE")" ]; then
    die "$VELERO_STATE exists, is not empty and is not a velero state dir (no $MARKER)"
  fi
}

cmd_up() {
  local t0; t0="$(now_ms)"
  validate_regions
  ensure_binaries
  check_state_dir
  [ -n "$(clusters)" ] || die "no testbed clusters in $TESTBED_STATE (run: hack/testbed.sh up)"
  mkdir -p "$VELERO_STATE"/{pids,logs,s3}
  touch "$VELERO_STATE/$MARKER"
  log "state: $VELERO_STATE"
  local region name
  for region in $(regions); do ensure_store "$region"; done
  # The node-agent's image, once for every cluster with a real node.
  for name in $(clusters); do
    has_real_node "$name" || continue
    if ! image_pushed; then
      log "$VELERO_IMAGE is not in the local registry yet: pushing it (hack/images.sh --velero-only)"
      bash "$here/images.sh" --velero-only >/dev/null || die "pushing $VELERO_IMAGE failed (run: hack/images.sh --velero-only)"
    fi
    break
  done
  local pids=() names=() failed=0 i
  for name in $(clusters); do
    ensure_velero "$name" &
    pids+=($!); names+=("$name")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { err "${names[$i]}: failed (log: $(logfile "velero-${names[$i]}"))"; failed=1; }
  done
  [ "$failed" = 0 ] || exit 1
  log "velero up in $(since "$t0")"
  cmd_status
}

# Exit status: 0 when every object store and Velero server runs and every BSL is Available.
cmd_status() {
  validate_regions
  local ok=1 region name st any=0
  for region in $(regions); do
    if s3_alive "$region"; then st="pid=$(cat "$(pidfile "s3-$region")")"; any=1; else st="down"; ok=0; fi
    printf 'store  %-10s http://127.0.0.1:%-6s bucket=%-16s %s data=%s\n' "$region" "$(s3_port "$region")" \
      "$(bucket "$region")" "$st" "$VELERO_STATE/s3/$region"
  done
  for name in $(clusters); do
    if velero_alive "$name"; then st="pid=$(cat "$(pidfile "velero-$name")")"; any=1; else st="down"; ok=0; fi
    printf 'velero %-4s metrics=127.0.0.1:%s home=%s %s log=%s\n' "$name" "$(metrics_port "$name")" \
      "$(home_region "$name")" "$st" "$(logfile "velero-$name")"
    local bsls
    if bsls="$(kc "$name" -n "$NAMESPACE" get backupstoragelocations.velero.io -l "app.kubernetes.io/managed-by=$MANAGED_BY" \
        -o 'jsonpath={range .items[*]}{.metadata.name}={.status.phase}{.spec.default}{" "}{end}' 2>/dev/null)"; then
      printf '       BSLs: %s\n' "$(sed 's/=\([A-Za-z]*\)true/=\1(default)/g; s/false//g' <<<"${bsls:-none}")"
    else
      printf '       BSLs: (cluster not reachable)\n'
    fi
    bsls_available "$name" || ok=0
    if has_real_node "$name"; then
      local agents
      agents="$(kc "$name" -n "$NAMESPACE" get pods -l role=node-agent -o \
        'jsonpath={range .items[*]}{.metadata.name}@{.spec.nodeName}={.status.phase}/ready={.status.containerStatuses[0].ready}{" "}{end}' 2>/dev/null)" || agents=""
      if image_pushed "registry.gov.cn/govcloud/pause:3.10"; then
        printf '       node-agent: %s\n' "${agents:-none}"
        node_agent_ready "$name" || ok=0
      else
        # Not a failure yet: its pods start once hack/images.sh --push has pushed the pause image.
        printf '       node-agent: %s(waiting for hack/images.sh --push)\n' "${agents:-none }"
      fi
    fi
  done
  [ "$any" = 1 ] || log "velero is not running (run: hack/velero.sh up)"
  [ "$ok" = 1 ]
}

cmd_env() {
  validate_regions
  local region name upper
  printf 'export GOVCLOUD_VELERO=%q\n' "$VELERO"
  printf 'export GOVCLOUD_VELERO_NAMESPACE=%q\n' "$NAMESPACE"
  printf 'export GOVCLOUD_VELERO_REGIONS=%q\n' "$VELERO_REGIONS"
  printf 'export GOVCLOUD_VELERO_ACCESS_KEY=%q\n' "$VELERO_ACCESS_KEY"
  printf 'export GOVCLOUD_VELERO_SECRET_KEY=%q\n' "$VELERO_SECRET_KEY"
  for region in $(regions); do
    upper="$(tr 'a-z-' 'A-Z_' <<<"$region")"
    printf 'export GOVCLOUD_VELERO_S3_URL_%s=%q\n' "$upper" "http://127.0.0.1:$(s3_port "$region")"
    printf 'export GOVCLOUD_VELERO_BUCKET_%s=%q\n' "$upper" "$(bucket "$region")"
    printf 'export GOVCLOUD_VELERO_DATA_%s=%q\n' "$upper" "$VELERO_STATE/s3/$region"
  done
  for name in $(clusters); do
    printf 'export GOVCLOUD_VELERO_HOME_REGION_%s=%q\n' "${name#dc}" "$(home_region "$name")"
  done
}

cmd_down() {
  if [ ! -d "$VELERO_STATE" ]; then log "nothing to stop ($VELERO_STATE does not exist)"; return 0; fi
  [ -f "$VELERO_STATE/$MARKER" ] || die "$VELERO_STATE is not a velero state dir (no $MARKER); not touching it"
  local f name region
  # Velero servers first (clients of the stores), then the stores. Also the
  # PID files of clusters or regions no longer configured.
  for f in "$VELERO_STATE"/pids/velero-*.pid; do
    [ -e "$f" ] || continue
    name="$(basename "$f" .pid)"; name="${name#velero-}"
    stop_process "velero-$name" "$(velero_needle "$name")"
  done
  for f in "$VELERO_STATE"/pids/s3-*.pid; do
    [ -e "$f" ] || continue
    region="$(basename "$f" .pid)"; region="${region#s3-}"
    stop_process "s3-$region" "$(s3_needle "$region")"
  done
  rm -rf "$VELERO_STATE"
  log "removed $VELERO_STATE (object data included); Velero objects in the clusters are left as they are"
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

case "${1:-}" in
  up) cmd_up;;
  down) cmd_down;;
  status) cmd_status;;
  env) cmd_env;;
  -h|--help|help) usage;;
  *) usage >&2; exit 2;;
esac
