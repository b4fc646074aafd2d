#!/usr/bin/env bash
# Throughput of the encrypting S3 gateway (operator/gateway, SM4-GCM) against the object
# store directly: PUT (multipart) and GET (ranged, one part per request) of one object in
# parts, several runs, direct and gateway alternating. Everything on 127.0.0.1 ports of
# this machine; every process it starts is stopped by PID at the end.
#
#   hack/bench-gateway.sh            1 GiB in 8 MiB parts, 3 runs
#
# Environment:
#   BENCH_SIZE_MIB    object size (default 1024)
#   BENCH_PART_MIB    part size (default 8)
#   BENCH_PARALLEL    parts in flight (default 4, as the AWS SDK's uploader and kopia use)
#   BENCH_RUNS        runs of each (default 3)
#   CARGO_TARGET_DIR  where the release build goes (default target/)
#
# Needs s3s-fs (hack/build-velero.sh) and a release build of govcloud-gateway (made here).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

SIZE="${BENCH_SIZE_MIB:-1024}"
PART="${BENCH_PART_MIB:-8}"
PAR="${BENCH_PARALLEL:-4}"
RUNS="${BENCH_RUNS:-3}"
TARGET="${CARGO_TARGET_DIR:-$root/target}"

log() { printf '[bench-gateway %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

s3s_fs="$S3S_FS_BIN/bin/s3s-fs"
[ -x "$s3s_fs" ] || { log "no $s3s_fs: run hack/build-velero.sh"; exit 1; }

log "building govcloud-gateway (release)"
(cd "$root" && cargo build --release --quiet -p govcloud-gateway --bins --examples)
gateway="$TARGET/release/govcloud-s3-gateway"
bench="$TARGET/release/examples/s3bench"

work="$(mktemp -d "${TMPDIR:-/tmp}/bench-gateway.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  log "nothing listens on port $1"; return 1
}

store_port="$(free_port)"
mkdir -p "$work/store/backups" "$work/kek"
"$s3s_fs" --host 127.0.0.1 --port "$store_port" --access-key bench-store --secret-key bench-store-secret \
  "$work/store" >"$work/store.log" 2>&1 &
pids+=($!)
wait_port "$store_port"

od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$work/kek/kek.bench"
printf bench >"$work/kek/current"
gw_port="$(free_port)"
cat >"$work/config.yaml" <<EOF
listen: 127.0.0.1:$gw_port
upstream:
  endpoint: http://127.0.0.1:$store_port
  accessKey: bench-store
  secretKey: bench-store-secret
keyDir: $work/kek
agencies:
  - {name: bench, accessKey: BENCH, secretKey: bench-secret, bucket: backups, prefix: bench/}
EOF
RUST_LOG=warn "$gateway" --config "$work/config.yaml" serve >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_port "$gw_port"

log "$SIZE MiB in $PART MiB parts, $PAR in flight, $RUNS runs; $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
declare -a dput dget gput gget
for run in $(seq "$RUNS"); do
  out="$("$bench" "http://127.0.0.1:$store_port" bench-store bench-store-secret backups "bench/direct-$run" "$SIZE" "$PART" "$PAR")"
  log "run $run direct:  $out"
  dput+=("$(sed -n 's/.*put_mib_s=\([0-9.]*\).*/\1/p' <<<"$out")")
  dget+=("$(sed -n 's/.*get_mib_s=\([0-9.]*\).*/\1/p' <<<"$out")")
  out="$("$bench" "http://127.0.0.1:$gw_port" BENCH bench-secret backups "bench/gateway-$run" "$SIZE" "$PART" "$PAR")"
  log "run $run gateway: $out"
  gput+=("$(sed -n 's/.*put_mib_s=\([0-9.]*\).*/\1/p' <<<"$out")")
  gget+=("$(sed -n 's/.*get_mib_s=\([0-9.]*\).*/\1/p' <<<"$out")")
done

range() { printf '%s\n' "$@" | sort -n | awk 'NR==1{lo=$1} {hi=$1} END{printf "%.0f–%.0f", lo, hi}'; }
ratio() { # ratio range of gateway/direct per run: ratio "g1 g2 .." "d1 d2 .."
  paste -d' ' <(tr ' ' '\n' <<<"$1") <(tr ' ' '\n' <<<"$2") | awk '{print 100*$1/$2}' | sort -n |
    awk 'NR==1{lo=$1} {hi=$1} END{printf "%.0f–%.0f %%", lo, hi}'
}
echo
echo "| $SIZE MiB in $PART MiB parts ($RUNS runs) | direct to the store, MiB/s | through the gateway, MiB/s | gateway / direct |"
echo "|---|---|---|---|"
echo "| PUT (multipart) | $(range "${dput[@]}") | $(range "${gput[@]}") | $(ratio "${gput[*]}" "${dput[*]}") |"
echo "| GET (ranged, one part per request) | $(range "${dget[@]}") | $(range "${gget[@]}") | $(ratio "${gget[*]}" "${dget[*]}") |"
