#!/usr/bin/env bash
# A local image registry on 127.0.0.1 for the testbed's real nodes: images without the
# internet. hack/images.sh pushes the project's images to it; containerd pulls them
# through a registry mirror for registry.gov.cn (see docs/development.md, "Images and the
# local registry").
#
#   hack/registry.sh build     build the registry (distribution, the code of the "registry:3"
#                              image) from the Go module proxy into
#                              $GOVCLOUD_CACHE/bin/registry-<version>/registry (cached by version)
#   hack/registry.sh up        build if needed; start (or reuse) it on 127.0.0.1:$REGISTRY_PORT
#   hack/registry.sh down      stop the registry this script started; remove its state (images)
#   hack/registry.sh status    URL, process, repositories and tags (exit 0 when it answers /v2/)
#   hack/registry.sh env       shell exports: REGISTRY_BIN, REGISTRY_URL, REGISTRY_ADDR
#
# Decisions:
#   - github.com/distribution/distribution/v3 $REGISTRY_VERSION (hack/versions.sh). Its go.mod
#     has no replace lines, so "go install …/cmd/registry@version" works; CGO_ENABLED=0,
#     -trimpath, the version stamped into the binary.
#   - Plain HTTP on 127.0.0.1 only, no auth: a testbed registry. Filesystem storage under
#     $REGISTRY_STATE/data; deletes enabled (so a test can remove a tag). Tracing off
#     (OTEL_TRACES_EXPORTER=none: the registry would otherwise try an OTLP collector).
#   - State: $REGISTRY_STATE (default $TESTBED_STATE/registry) holds config.yml, data/, the
#     PID file and the log, marked with .govcloud-registry. If $TESTBED_STATE does not exist
#     it is created with the testbed's marker, so that a later "hack/testbed.sh up" accepts it.
#     "hack/testbed.sh up" starts it (with the default REGISTRY_STATE) and "hack/testbed.sh
#     down" stops it and removes its state, images included.
#
# Environment:
#   GOVCLOUD_CACHE     cache root (default ~/.cache/govcloud)
#   REGISTRY_VERSION   default in hack/versions.sh
#   TESTBED_STATE      testbed state dir (default $GOVCLOUD_CACHE/testbed)
#   REGISTRY_STATE     default $TESTBED_STATE/registry
#   REGISTRY_PORT      listen port on 127.0.0.1 (default 15000)
#   REGISTRY_TIMEOUT   seconds to wait for readiness (default 30)
#
# Everything listens on 127.0.0.1 only; the process is stopped only by its PID file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

TESTBED_STATE="${TESTBED_STATE:-$GOVCLOUD_CACHE/testbed}"
REGISTRY_STATE="${REGISTRY_STATE:-$TESTBED_STATE/registry}"
REGISTRY_PORT="${REGISTRY_PORT:-15000}"
REGISTRY_TIMEOUT="${REGISTRY_TIMEOUT:-30}"

MODULE="github.com/distribution/distribution/v3"
URL="http://127.0.0.1:$REGISTRY_PORT"
PIDFILE="$REGISTRY_STATE/registry.pid"
LOGFILE="$REGISTRY_STATE/registry.log"
CONFIG="$REGISTRY_STATE/config.yml"
MARKER=".govcloud-registry"
TESTBED_MARKER=".govcloud-testbed"

log() { printf '[registry %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
err() { printf '[registry] ERROR: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

# ---------------------------------------------------------------------------
# build

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

cmd_build() {
  if [ -x "$REGISTRY_BIN/registry" ]; then
    log "registry $REGISTRY_VERSION: cached in $REGISTRY_BIN"
    return 0
  fi
  command -v go >/dev/null || die "go is required"
  local out="$REGISTRY_BIN"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  log "registry $REGISTRY_VERSION: downloading $MODULE from the module proxy"
  local info
  if ! info="$(cd "$out.tmp" && GOTOOLCHAIN=local go mod download -json "$MODULE@$REGISTRY_VERSION" 2>&1)" \
     || grep -q '"Error"' <<<"$info"; then
    err "the module proxy refused $MODULE@$REGISTRY_VERSION:"
    printf '%s\n' "$info" >&2
    rm -rf "$out.tmp"
    exit 1
  fi
  local modfile
  modfile="$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$info")"
  if [ -f "$modfile" ] && grep -qE '^replace|=>' "$modfile"; then
    die "$MODULE@$REGISTRY_VERSION has replace lines in its go.mod; build it in a wrapper module (see hack/build-testbed.sh)"
  fi
  with_heartbeat "registry $REGISTRY_VERSION" \
    env CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -buildvcs=false" GOBIN="$out.tmp" \
    go install -trimpath \
      -ldflags "-s -w -X $MODULE/version.version=$REGISTRY_VERSION" \
      "$MODULE/cmd/registry@$REGISTRY_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
  log "registry: $out/registry ($("$out/registry" --version 2>&1 | head -n 1))"
}

# ---------------------------------------------------------------------------
# Process (PID file only; never by name)

# True if the PID in the PID file is alive and is ours: its command line names our
# config file (guards against PID reuse).
registry_alive() {
  local pid state
  [ -f "$PIDFILE" ] || return 1
  pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ "$state" != Z ] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$CONFIG"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

registry_ready() { curl -fs --max-time 2 -o /dev/null "$URL/v2/"; }

check_state_dir() {
  case "$REGISTRY_STATE" in
    ""|/|"$HOME"|"$HOME/") die "refusing to use REGISTRY_STATE='$REGISTRY_STATE'";;
  esac
  if [ -d "$REGISTRY_STATE" ] && [ ! -f "$REGISTRY_STATE/$MARKER" ] && [ -n "$(ls -A "$REGISTRY_STATE")" ]; then
    die "$REGISTRY_STATE exists, is not empty and is not a registry state dir (no $MARKER)"
  fi
}

write_config() {
  cat >"$1" <<EOF
# Generated by hack/registry.sh; rewritten on every 'up'.
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $REGISTRY_STATE/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$REGISTRY_PORT
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF
}

cmd_up() {
  [[ "$REGISTRY_PORT" =~ ^[0-9]+$ ]] || die "REGISTRY_PORT must be a number"
  local start=$SECONDS
  [ -x "$REGISTRY_BIN/registry" ] || { log "binary missing; building"; cmd_build; }
  command -v curl >/dev/null || die "curl is required"
  command -v setsid >/dev/null || die "setsid is required"
  check_state_dir
  if [ ! -d "$TESTBED_STATE" ]; then
    mkdir -p "$TESTBED_STATE"
    touch "$TESTBED_STATE/$TESTBED_MARKER"
  fi
  mkdir -p "$REGISTRY_STATE/data"
  touch "$REGISTRY_STATE/$MARKER"
  if registry_alive; then
    log "already running (reused) — $URL (pid $(cat "$PIDFILE"))"
  else
    if port_in_use "$REGISTRY_PORT"; then
      die "cannot start the registry: 127.0.0.1:$REGISTRY_PORT is already in use by a process this script did not start (set REGISTRY_PORT or stop it)"
    fi
    write_config "$CONFIG"
    rm -f "$PIDFILE"
    printf '\n===== %s starting registry %s =====\n' "$(date -Is)" "$REGISTRY_VERSION" >>"$LOGFILE"
    # The child writes its own PID, then execs the registry, so the PID is exact.
    # shellcheck disable=SC2016
    OTEL_TRACES_EXPORTER=none OTEL_SDK_DISABLED=true \
      setsid -f bash -c 'cd "$1" && echo $$ >"$2.tmp" && mv "$2.tmp" "$2" && shift 2 && exec "$@"' \
      registry-sh "$REGISTRY_STATE" "$PIDFILE" "$REGISTRY_BIN/registry" serve "$CONFIG" \
      >>"$LOGFILE" 2>&1 </dev/null
    local deadline=$((SECONDS + 10))
    while [ ! -s "$PIDFILE" ]; do
      [ $SECONDS -lt $deadline ] || die "the registry did not start; see $LOGFILE"
      sleep 0.05
    done
  fi
  local deadline=$((SECONDS + REGISTRY_TIMEOUT))
  while ! registry_ready; do
    if ! registry_alive; then
      err "the registry exited while starting. Last lines of $LOGFILE:"
      tail -n 20 "$LOGFILE" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      err "timed out after ${REGISTRY_TIMEOUT}s waiting for $URL/v2/; see $LOGFILE"
      tail -n 10 "$LOGFILE" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  log "ready in $((SECONDS - start))s — $URL (pid $(cat "$PIDFILE")), storage $REGISTRY_STATE/data"
}

# Exit status: 0 when our registry runs and answers /v2/.
cmd_status() {
  if ! registry_alive; then
    log "the registry is not running (run: hack/registry.sh up)"
    return 1
  fi
  local ready=no
  registry_ready && ready=ok
  printf 'registry %s ready=%s pid=%s version=%s\n' "$URL" "$ready" "$(cat "$PIDFILE")" "$REGISTRY_VERSION"
  printf '  config=%s\n  data=%s\n  log=%s\n' "$CONFIG" "$REGISTRY_STATE/data" "$LOGFILE"
  [ "$ready" = ok ] || return 1
  local repos r
  repos="$(curl -fsS --max-time 5 "$URL/v2/_catalog?n=1000" | jq -r '.repositories[]?')" || return 1
  if [ -z "$repos" ]; then echo "  no repositories"; return 0; fi
  for r in $repos; do
    printf '  %s: %s\n' "$r" "$(curl -fsS --max-time 5 "$URL/v2/$r/tags/list" | jq -r '(.tags // []) | join(" ")')"
  done
}

cmd_env() {
  printf 'export REGISTRY_BIN=%q\n' "$REGISTRY_BIN/registry"
  printf 'export REGISTRY_URL=%q\n' "$URL"
  printf 'export REGISTRY_ADDR=%q\n' "127.0.0.1:$REGISTRY_PORT"
}

cmd_down() {
  if [ ! -d "$REGISTRY_STATE" ]; then log "nothing to stop ($REGISTRY_STATE does not exist)"; return 0; fi
  [ -f "$REGISTRY_STATE/$MARKER" ] || die "$REGISTRY_STATE is not a registry state dir (no $MARKER); not touching it"
  if registry_alive; then
    local pid; pid="$(cat "$PIDFILE")"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + ${REGISTRY_KILL_GRACE:-10}))
    while registry_alive; do
      if [ $SECONDS -ge $deadline ]; then
        log "registry (pid $pid) still running after TERM: sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
        break
      fi
      sleep 0.2
    done
    log "registry stopped (pid $pid)"
  fi
  rm -rf "$REGISTRY_STATE"
  log "removed $REGISTRY_STATE"
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

case "${1:-}" in
  build) cmd_build;;
  up) cmd_up;;
  down) cmd_down;;
  status) cmd_status;;
  env) cmd_env;;
  -h|--help|help) usage;;
  *) usage >&2; exit 2;;
esac
