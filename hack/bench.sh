#!/usr/bin/env bash
# Benchmark of issue 9 on the local testbed: the operator (real binary, the Helm chart's
# ServiceAccount) converging a fleet of agencies and hosted systems on three clusters,
# against a bare client applying the same objects (tests/src/bin/bench.rs).
#
#   hack/bench.sh                 BENCH_AGENCIES (200) agencies, BENCH_SYSTEMS (500) systems
#   hack/bench.sh --small         20 agencies, 50 systems, short windows, debug build (CI smoke, ~3 min)
#   hack/bench.sh [--small] --out docs/performance.md    also write the results there
#   hack/bench.sh ... -- ARGS     extra arguments for the driver (see `bench --help`)
#
# Environment:
#   BENCH_AGENCIES, BENCH_SYSTEMS   fleet size (defaults 200 / 500; --small 20 / 50)
#   BENCH_BACKUP_SHARE              share of systems with a BackupPolicy (default 0.2)
#   BENCH_STEADY_SECS               steady-state window (default 60; --small 15)
#   BENCH_NEW_AGENCIES              agencies added one by one while steady (default 20; --small 5)
#   BENCH_CONCURRENCY               operator --concurrency (default 8, the production default)
#   BENCH_PROFILE                   release (default) or debug (default with --small)
#   BENCH_OPERATOR_LOG              the operator's RUST_LOG (default warn; govcloud=debug shows each write's reason)
#   BENCH_KEEP_FLEET=1              baseline first, nothing deleted (national scale: deleting 6,000
#                                   namespaces twice takes most of an hour); stop the testbed afterwards
#   BENCH_KEEP_CLUSTERS=1           as BENCH_KEEP_FLEET, and the clusters stay registered (start an
#                                   operator against the fleet by hand, e.g. to profile a restart)
#   BENCH_FRESH_CLUSTERS=1          baseline first, then the testbed is stopped and started again, empty,
#                                   for the operator's phase (each phase on clusters holding nothing
#                                   else; needs a testbed this script may restart); nothing deleted
#   TESTBED_STATE                   testbed state dir (default ~/.cache/govcloud/testbed)
#
# The testbed: if none runs, three clusters are started with enough KWOK node capacity for
# the fleet's pods. A running testbed is used as it is (never stopped or restarted, but with
# BENCH_FRESH_CLUSTERS=1); the
# script warns when its node capacity is short. Everything the benchmark creates is
# labelled govcloud.io/bench=true and removed at the end.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

log() { printf '[bench.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '[bench.sh %s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

small=0
out=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --small) small=1 ;;
    --out) out="${2:?--out needs a file}"; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$small" = 1 ]; then
  agencies="${BENCH_AGENCIES:-20}"; systems="${BENCH_SYSTEMS:-50}"
  steady="${BENCH_STEADY_SECS:-15}"; new_agencies="${BENCH_NEW_AGENCIES:-5}"
else
  agencies="${BENCH_AGENCIES:-200}"; systems="${BENCH_SYSTEMS:-500}"
  steady="${BENCH_STEADY_SECS:-60}"; new_agencies="${BENCH_NEW_AGENCIES:-20}"
fi
backup_share="${BENCH_BACKUP_SHARE:-0.2}"
concurrency="${BENCH_CONCURRENCY:-8}"
clusters=3

export TESTBED_STATE="${TESTBED_STATE:-$GOVCLOUD_CACHE/testbed}"
KUBECTL="$K8S_BIN/kubectl"

# Pods per cluster: one per system (round-robin over the clusters), the operator's own
# chart pod and room for other users of the testbed.
keep="${BENCH_KEEP_FLEET:-0}"
[ "${BENCH_KEEP_CLUSTERS:-0}" = 1 ] && keep=1
copies=1
[ "$keep" = 1 ] && copies=2   # the baseline's pods stay next to the operator's
[ "${BENCH_FRESH_CLUSTERS:-0}" = 1 ] && copies=1   # each phase on empty clusters
pods_needed=$(( copies * ((systems + clusters - 1) / clusters) + 50 ))
node_pods="${TESTBED_NODE_PODS:-250}"
nodes="${TESTBED_NODES:-$(( (pods_needed + node_pods - 1) / node_pods ))}"
[ "$nodes" -ge 3 ] || nodes=3

testbed_running() { bash "$here/testbed.sh" status >/dev/null 2>&1; }
existing=0
for n in 1 2 3; do
  [ -f "$TESTBED_STATE/dc$n/kubeconfig" ] && existing=$n
done

if testbed_running && [ "$existing" -ge "$clusters" ]; then
  log "using the running testbed in $TESTBED_STATE (not restarted)"
else
  if testbed_running; then
    warn "the running testbed has $existing cluster(s); adding the missing ones (the running ones are reused as they are)"
  else
    log "no testbed runs: starting $clusters clusters with $nodes KWOK nodes each ($node_pods pods, 64 CPU, 256Gi per node)"
  fi
  TESTBED_CLUSTERS="$clusters" TESTBED_NODES="$nodes" TESTBED_NODE_PODS="$node_pods" \
    TESTBED_NODE_CPU="${TESTBED_NODE_CPU:-64}" TESTBED_NODE_MEMORY="${TESTBED_NODE_MEMORY:-256Gi}" \
    bash "$here/testbed.sh" up >&2
fi

# Actual capacity, per cluster: warn when the fleet's pods do not fit.
for n in $(seq 1 "$clusters"); do
  kc="$TESTBED_STATE/dc$n/kubeconfig"
  read -r count pods cpu mem < <("$KUBECTL" --kubeconfig "$kc" get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.status.allocatable.pods} {.status.allocatable.cpu} {.status.allocatable.memory}{"\n"}{end}' |
    awk 'NF { c++; p += $1; cpu = $2; mem = $3 } END { printf "%d %d %s %s\n", c, p, cpu, mem }')
  if [ "$pods" -lt "$pods_needed" ]; then
    warn "dc$n: $count KWOK node(s) hold $pods pods, the fleet needs about $pods_needed there; systems may stay Pending" \
      "(stop the testbed and rerun this script to start it with TESTBED_NODES=$nodes, when nobody else uses it)"
  fi
  if [ "$n" = 1 ]; then
    export TESTBED_NODES="$count" TESTBED_NODE_PODS="$((pods / (count > 0 ? count : 1)))" \
      TESTBED_NODE_CPU="$cpu" TESTBED_NODE_MEMORY="$mem"
  fi
done

# Figures come from release builds; the small configuration (a check that the script works,
# run by hack/test.sh) uses the debug build the test suite already has, unless
# BENCH_PROFILE=release.
profile="${BENCH_PROFILE:-release}"
[ "$small" = 1 ] && profile="${BENCH_PROFILE:-debug}"
if [ "$profile" = release ]; then
  log "building the operator and the driver (release)"
  (cd "$root" && cargo build --release -p govcloud-operator -p govcloud-tests --bin bench --bin govcloud-operator)
  target="$CARGO_TARGET_DIR/release"
else
  log "building the operator and the driver (debug: the figures of this run are not representative)"
  (cd "$root" && cargo build -p govcloud-operator -p govcloud-tests --bin bench --bin govcloud-operator)
  target="$CARGO_TARGET_DIR/debug"
fi

args=(--agencies "$agencies" --systems "$systems" --backup-share "$backup_share" --clusters "$clusters"
  --steady-secs "$steady" --new-agencies "$new_agencies" --concurrency "$concurrency")
[ -z "$out" ] || args+=(--out "$out")
[ "$keep" = 1 ] && args+=(--keep-fleet)
[ "${BENCH_KEEP_CLUSTERS:-0}" = 1 ] && args+=(--keep-clusters)
[ "${BENCH_FRESH_CLUSTERS:-0}" = 1 ] && args+=(--fresh-clusters)
args+=("${extra[@]}")
log "running: bench ${args[*]}"
logfile="$TESTBED_STATE/bench-$(date +%Y%m%d-%H%M%S).log"
set +e
(cd "$root" && BENCH_OPERATOR_BIN="$target/govcloud-operator" "$target/bench" "${args[@]}") \
  2> >(tee "$logfile" >&2)
rc=$?
set -e
log "driver log: $logfile"
exit "$rc"
