#!/usr/bin/env bash
# Prometheus on 127.0.0.1 for the local testbed: scrapes the operator (and any
# other /metrics endpoint) and evaluates the chart's alert rules, no containers.
#
#   hack/prometheus.sh build            download the Debian "prometheus" package with apt-get
#                                       download (never installed: the package starts a daemon on
#                                       0.0.0.0:9090) and extract it with dpkg -x into
#                                       $GOVCLOUD_CACHE/bin/prometheus-<debian version>/
#   hack/prometheus.sh up TARGET...     build if needed; start (or reuse) Prometheus on
#                                       127.0.0.1:$PROMETHEUS_PORT scraping http://TARGET/metrics
#                                       every 2s (TARGET is host:port, or job=host:port; the
#                                       default job is govcloud-operator). A running Prometheus
#                                       whose targets differ gets the new config and a reload.
#   hack/prometheus.sh down             stop the Prometheus this script started; remove its state
#   hack/prometheus.sh status           URL, process, targets and their health, rules, firing alerts
#                                       (exit 0 when it runs and answers /-/ready)
#   hack/prometheus.sh env              shell exports (eval "$(hack/prometheus.sh env)"):
#                                       PROMETHEUS_BIN, PROMTOOL_BIN, PROMETHEUS_URL
#
# Decisions:
#   - Binaries: Debian bookworm's prometheus $PROMETHEUS_VERSION (Prometheus 2.42; ships
#     prometheus and promtool) from hack/versions.sh, extracted under
#     $PROMETHEUS_DIR/usr/bin. Nothing is installed; no daemon is started by apt/dpkg.
#   - Scrape and rule evaluation interval 2s (PROMETHEUS_SCRAPE_INTERVAL), so rates
#     and alerts react quickly on a testbed. Alert "for:" durations are the chart's.
#   - rule_files: charts/govcloud-operator/files/alerts.rules.yaml of this checkout
#     (absolute path; checked with promtool before every start or reload). No
#     Alertmanager: alerts show in /alerts and /api/v1/alerts.
#   - State: $PROMETHEUS_STATE (default $TESTBED_STATE/prometheus) holds the generated
#     prometheus.yml, the TSDB (data/), the PID file and the log. "hack/testbed.sh
#     down" runs "hack/prometheus.sh down" first when this state is in its default
#     place; with PROMETHEUS_STATE elsewhere, run it yourself. If $TESTBED_STATE does
#     not exist yet, it is created with the testbed's marker so that a later
#     "hack/testbed.sh up" accepts it.
#   - Lifecycle API (--web.enable-lifecycle) is on: POST /-/reload re-reads config and rules.
#   - Debian's build has the classic web UI (/graph, /alerts, /targets) and reads its
#     templates from --web.local-assets (a Debian flag, default /usr/share/prometheus/web/):
#     pointed at the extracted copy, as are the console templates and libraries. The
#     pages are under /classic/ (/classic/alerts, /classic/targets); the API is complete.
#
# Environment:
#   TESTBED_STATE                testbed state dir (default ${GOVCLOUD_CACHE:-~/.cache/govcloud}/testbed)
#   PROMETHEUS_STATE             default $TESTBED_STATE/prometheus
#   PROMETHEUS_PORT              listen port on 127.0.0.1 (default 17900)
#   PROMETHEUS_SCRAPE_INTERVAL   scrape and evaluation interval (default 2s)
#   PROMETHEUS_RETENTION         TSDB retention (default 1d)
#   PROMETHEUS_RULES             rule file (default charts/govcloud-operator/files/alerts.rules.yaml)
#   PROMETHEUS_TIMEOUT           seconds to wait for readiness (default 60)
#
# Everything listens on 127.0.0.1 only; the process is stopped only by its PID file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

TESTBED_STATE="${TESTBED_STATE:-$GOVCLOUD_CACHE/testbed}"
PROMETHEUS_STATE="${PROMETHEUS_STATE:-$TESTBED_STATE/prometheus}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-17900}"
PROMETHEUS_SCRAPE_INTERVAL="${PROMETHEUS_SCRAPE_INTERVAL:-2s}"
PROMETHEUS_RETENTION="${PROMETHEUS_RETENTION:-1d}"
PROMETHEUS_RULES="${PROMETHEUS_RULES:-$repo/charts/govcloud-operator/files/alerts.rules.yaml}"
PROMETHEUS_TIMEOUT="${PROMETHEUS_TIMEOUT:-60}"

URL="http://127.0.0.1:$PROMETHEUS_PORT"
PIDFILE="$PROMETHEUS_STATE/prometheus.pid"
LOGFILE="$PROMETHEUS_STATE/prometheus.log"
CONFIG="$PROMETHEUS_STATE/prometheus.yml"
TARGETS_FILE="$PROMETHEUS_STATE/targets"
MARKER=".govcloud-prometheus"
TESTBED_MARKER=".govcloud-testbed"
DEFAULT_JOB="govcloud-operator"

log() { printf '[prometheus] %s\n' "$*"; }
err() { printf '[prometheus] ERROR: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

now_ms() { date +%s%3N; }
since() { local d=$(( $(now_ms) - $1 )); printf '%d.%ds' $((d / 1000)) $(((d % 1000) / 100)); }

# ---------------------------------------------------------------------------
# build

binaries_ok() { [ -x "$PROMETHEUS_BIN" ] && [ -x "$PROMTOOL_BIN" ]; }

# True when apt knows the pinned version of the package.
apt_has_version() {
  apt-cache madison prometheus 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF -- "$PROMETHEUS_VERSION"
}

cmd_build() {
  if binaries_ok; then
    log "prometheus $PROMETHEUS_VERSION already extracted (reused): $PROMETHEUS_DIR"
    return 0
  fi
  local b
  for b in apt-get apt-cache dpkg; do command -v "$b" >/dev/null || die "$b is required (a Debian system)"; done
  local t0; t0="$(now_ms)"
  if ! apt_has_version; then
    log "apt does not list prometheus=$PROMETHEUS_VERSION; running apt-get update"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
    if ! apt_has_version; then
      err "prometheus=$PROMETHEUS_VERSION is not available from apt; available:"
      apt-cache madison prometheus >&2 || true
      die "set PROMETHEUS_VERSION to one of them (and update hack/versions.sh)"
    fi
  fi
  mkdir -p "$GOVCLOUD_CACHE/bin"
  # Download in a temp dir the _apt user can reach (apt-get download as root drops to
  # _apt, and warns when it cannot), extract next to the destination, then move.
  local dl tmp
  dl="$(mktemp -d "${TMPDIR:-/tmp}/govcloud-prometheus-deb.XXXXXX")"
  tmp="$(mktemp -d "$GOVCLOUD_CACHE/bin/.prometheus-build.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$dl' '$tmp'" EXIT
  chmod 755 "$dl"
  if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
  log "downloading prometheus=$PROMETHEUS_VERSION (apt-get download; the package is not installed)"
  (cd "$dl" && apt-get download -q "prometheus=$PROMETHEUS_VERSION")
  local deb; deb="$(find "$dl" -maxdepth 1 -name 'prometheus_*.deb' | head -n 1)"
  [ -n "$deb" ] || die "apt-get download produced no prometheus_*.deb"
  log "extracting $(basename "$deb") ($(du -h "$deb" | cut -f1)) with dpkg -x"
  dpkg -x "$deb" "$tmp/root"
  [ -x "$tmp/root/usr/bin/prometheus" ] && [ -x "$tmp/root/usr/bin/promtool" ] \
    || die "the package has no usr/bin/prometheus and usr/bin/promtool"
  rm -rf "$PROMETHEUS_DIR"
  mv "$tmp/root" "$PROMETHEUS_DIR"
  rm -rf "$dl" "$tmp"; trap - EXIT
  binaries_ok || die "extraction finished but $PROMETHEUS_BIN or $PROMTOOL_BIN is missing"
  log "built in $(since "$t0"): $("$PROMETHEUS_BIN" --version 2>&1 | head -n 1)"
  log "  prometheus: $PROMETHEUS_BIN"
  log "  promtool:   $PROMTOOL_BIN"
}

# ---------------------------------------------------------------------------
# Process (PID file only; never by name)

# True if the PID in the PID file is alive and is ours: its command line
# mentions our config file (guards against PID reuse).
prom_alive() {
  local pid state
  [ -f "$PIDFILE" ] || return 1
  pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ "$state" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config.file=$CONFIG "
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

prom_ready() { curl -fs --max-time 2 -o /dev/null "$URL/-/ready"; }

wait_ready() {
  local deadline=$((SECONDS + PROMETHEUS_TIMEOUT))
  while ! prom_ready; do
    if ! prom_alive; then
      err "prometheus exited while starting. Last lines of $LOGFILE:"
      tail -n 20 "$LOGFILE" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      err "timed out after ${PROMETHEUS_TIMEOUT}s waiting for $URL/-/ready; see $LOGFILE"
      tail -n 10 "$LOGFILE" >&2 || true
      exit 1
    fi
    sleep 0.25
  done
}

# ---------------------------------------------------------------------------
# Config

# Validates the TARGET arguments and prints them normalised as "job=host:port", one a line.
normalise_targets() {
  local t job hp
  for t in "$@"; do
    if [[ "$t" == *=* ]]; then job="${t%%=*}"; hp="${t#*=}"; else job="$DEFAULT_JOB"; hp="$t"; fi
    [[ "$job" =~ ^[a-zA-Z_][a-zA-Z0-9_-]*$ ]] || die "invalid job name '$job' in target '$t'"
    [[ "$hp" =~ ^[A-Za-z0-9._-]+:[0-9]{1,5}$ ]] || die "target '$t' is not host:port (or job=host:port)"
    echo "$job=$hp"
  done
}

# write_config TARGETS CONFIG: prometheus.yml for the job=host:port lines in TARGETS.
write_config() {
  local targets="$1" f="$2" job j hp
  {
    echo "# Generated by hack/prometheus.sh; rewritten on every 'up'."
    echo "global:"
    echo "  scrape_interval: $PROMETHEUS_SCRAPE_INTERVAL"
    echo "  scrape_timeout: $PROMETHEUS_SCRAPE_INTERVAL"
    echo "  evaluation_interval: $PROMETHEUS_SCRAPE_INTERVAL"
    echo "rule_files:"
    echo "  - \"$PROMETHEUS_RULES\""
    echo "scrape_configs:"
    for job in $(cut -d= -f1 "$targets" | sort -u); do
      echo "  - job_name: \"$job\""
      echo "    metrics_path: /metrics"
      echo "    scheme: http"
      echo "    static_configs:"
      echo "      - targets:"
      while IFS='=' read -r j hp; do
        if [ "$j" = "$job" ]; then echo "          - \"$hp\""; fi
      done <"$targets"
    done
  } >"$f"
}

# ---------------------------------------------------------------------------
# Commands

check_state_dir() {
  case "$PROMETHEUS_STATE" in
    ""|/|"$HOME"|"$HOME/") die "refusing to use PROMETHEUS_STATE='$PROMETHEUS_STATE'";;
  esac
  if [ -d "$PROMETHEUS_STATE" ] && [ ! -f "$PROMETHEUS_STATE/$MARKER" ] && [ -n "$(ls -A "$PROMETHEUS_STATE")" ]; then
    die "$PROMETHEUS_STATE exists, is not empty and is not a prometheus state dir (no $MARKER)"
  fi
}

cmd_up() {
  [ $# -ge 1 ] || die "usage: hack/prometheus.sh up TARGET... (host:port or job=host:port, e.g. 127.0.0.1:8080)"
  [[ "$PROMETHEUS_PORT" =~ ^[0-9]+$ ]] || die "PROMETHEUS_PORT must be a number"
  local t0; t0="$(now_ms)"
  local targets; targets="$(normalise_targets "$@")"
  binaries_ok || { log "binaries missing; building"; cmd_build; }
  command -v curl >/dev/null || die "curl is required"
  command -v setsid >/dev/null || die "setsid is required"
  [ -f "$PROMETHEUS_RULES" ] || die "rule file $PROMETHEUS_RULES not found"
  check_state_dir
  if [ ! -d "$TESTBED_STATE" ]; then
    mkdir -p "$TESTBED_STATE"
    touch "$TESTBED_STATE/$TESTBED_MARKER"
  fi
  mkdir -p "$PROMETHEUS_STATE/data"
  touch "$PROMETHEUS_STATE/$MARKER"

  printf '%s\n' "$targets" >"$TARGETS_FILE.new"
  write_config "$TARGETS_FILE.new" "$CONFIG.new"
  "$PROMTOOL_BIN" check config "$CONFIG.new" >"$PROMETHEUS_STATE/promtool-check.out" 2>&1 || {
    cat "$PROMETHEUS_STATE/promtool-check.out" >&2
    rm -f "$CONFIG.new" "$TARGETS_FILE.new"
    die "promtool check config failed for the generated config (rules: $PROMETHEUS_RULES)"
  }
  mv "$TARGETS_FILE.new" "$TARGETS_FILE"

  if prom_alive; then
    if cmp -s "$CONFIG.new" "$CONFIG"; then
      rm -f "$CONFIG.new"
      log "already running (reused) — $URL, same targets"
    else
      mv "$CONFIG.new" "$CONFIG"
      curl -fsS --max-time 10 -X POST "$URL/-/reload" >/dev/null \
        || die "reload via $URL/-/reload failed; see $LOGFILE"
      log "already running (reused) — $URL; targets changed: config reloaded"
    fi
  else
    mv "$CONFIG.new" "$CONFIG"
    if port_in_use "$PROMETHEUS_PORT"; then
      die "cannot start prometheus: 127.0.0.1:$PROMETHEUS_PORT is already in use by a process this script did not start (set PROMETHEUS_PORT or stop it)"
    fi
    rm -f "$PIDFILE"
    printf '\n===== %s starting prometheus =====\n' "$(date -Is)" >>"$LOGFILE"
    # The child writes its own PID, then execs Prometheus, so the PID is exact.
    setsid -f bash -c 'cd "$1" && echo $$ >"$2.tmp" && mv "$2.tmp" "$2" && shift 2 && exec "$@"' \
      prometheus-sh "$PROMETHEUS_STATE" "$PIDFILE" "$PROMETHEUS_BIN" \
      --config.file="$CONFIG" \
      --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
      --web.external-url="$URL/" \
      --web.enable-lifecycle \
      --web.local-assets="$PROMETHEUS_DIR/usr/share/prometheus/web/" \
      --web.console.templates="$PROMETHEUS_DIR/etc/prometheus/consoles" \
      --web.console.libraries="$PROMETHEUS_DIR/etc/prometheus/console_libraries" \
      --storage.tsdb.path="$PROMETHEUS_STATE/data" \
      --storage.tsdb.retention.time="$PROMETHEUS_RETENTION" \
      --log.level=info --log.format=logfmt \
      >>"$LOGFILE" 2>&1 </dev/null
    local deadline=$((SECONDS + 10))
    while [ ! -s "$PIDFILE" ]; do
      [ $SECONDS -lt $deadline ] || die "prometheus did not start; see $LOGFILE"
      sleep 0.05
    done
  fi
  wait_ready
  log "ready in $(since "$t0") — $URL (pid $(cat "$PIDFILE"))"
  cmd_status
  echo
  log "use: eval \"\$(hack/prometheus.sh env)\""
}

# Exit status: 0 when our Prometheus runs and answers /-/ready.
cmd_status() {
  if ! prom_alive; then
    log "prometheus is not running (run: hack/prometheus.sh up TARGET...)"
    return 1
  fi
  local ready=no
  prom_ready && ready=ok
  printf 'prometheus %s ready=%s pid=%s version=%s\n' "$URL" "$ready" "$(cat "$PIDFILE")" "$PROMETHEUS_VERSION"
  printf '  ui=%s/classic/graph (also /classic/alerts, /classic/targets, /classic/rules)\n' "$URL"
  printf '  config=%s\n  rules=%s\n  data=%s\n  log=%s\n' "$CONFIG" "$PROMETHEUS_RULES" "$PROMETHEUS_STATE/data" "$LOGFILE"
  [ "$ready" = ok ] || return 1
  local json
  if json="$(curl -fsS --max-time 5 "$URL/api/v1/targets?state=active")"; then
    jq -r 'if (.data.activeTargets | length) == 0 then "  targets: none active yet (target discovery takes up to 5s after a start or reload)"
      else .data.activeTargets[] | "  target \(.labels.job) \(.scrapeUrl) health=\(.health)\(if (.lastError // "") != "" then " error=\(.lastError)" else "" end)" end' <<<"$json"
  fi
  if json="$(curl -fsS --max-time 5 "$URL/api/v1/rules")"; then
    jq -r '.data.groups[] | "  rule group \(.name): \(.rules | length) rules (\([.rules[] | select(.type == "alerting")] | length) alerts), file \(.file)"' <<<"$json"
  fi
  if json="$(curl -fsS --max-time 5 "$URL/api/v1/alerts")"; then
    jq -r '.data.alerts as $a | "  alerts: \([$a[] | select(.state == "firing")] | length) firing, \([$a[] | select(.state == "pending")] | length) pending",
      ($a[] | "    \(.state) \(.labels.alertname) \(.labels | del(.alertname) | to_entries | map("\(.key)=\(.value)") | join(" "))")' <<<"$json"
  fi
}

cmd_env() {
  printf 'export PROMETHEUS_BIN=%q\n' "$PROMETHEUS_BIN"
  printf 'export PROMTOOL_BIN=%q\n' "$PROMTOOL_BIN"
  printf 'export PROMETHEUS_URL=%q\n' "$URL"
}

cmd_down() {
  if [ ! -d "$PROMETHEUS_STATE" ]; then log "nothing to stop ($PROMETHEUS_STATE does not exist)"; return 0; fi
  [ -f "$PROMETHEUS_STATE/$MARKER" ] || die "$PROMETHEUS_STATE is not a prometheus state dir (no $MARKER); not touching it"
  if prom_alive; then
    local pid; pid="$(cat "$PIDFILE")"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + ${PROMETHEUS_KILL_GRACE:-15}))
    while prom_alive; do
      if [ $SECONDS -ge $deadline ]; then
        log "prometheus (pid $pid) still running after TERM: sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
        break
      fi
      sleep 0.2
    done
    log "prometheus stopped (pid $pid)"
  fi
  rm -rf "$PROMETHEUS_STATE"
  log "removed $PROMETHEUS_STATE"
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

case "${1:-}" in
  build) cmd_build;;
  up) shift; cmd_up "$@";;
  down) cmd_down;;
  status) cmd_status;;
  env) cmd_env;;
  -h|--help|help) usage;;
  *) usage >&2; exit 2;;
esac
