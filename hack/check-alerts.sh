#!/usr/bin/env bash
# Checks the chart's Prometheus alert rules with promtool (Prometheus 2.42, the
# Debian package extracted by hack/prometheus.sh build):
#   1. promtool check rules charts/govcloud-operator/files/alerts.rules.yaml
#      (syntax, PromQL, templates)
#   2. promtool test rules  charts/govcloud-operator/files/alerts.test.yaml
#      (every alert fires for its input series and stays silent for the others)
#
#   hack/check-alerts.sh        build promtool if needed, run both, print the result
#
# Environment:
#   ALERT_RULES   rule file (default charts/govcloud-operator/files/alerts.rules.yaml)
#   ALERT_TESTS   unit-test file (default charts/govcloud-operator/files/alerts.test.yaml)
#
# Exit status: 0 when both pass.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

ALERT_RULES="${ALERT_RULES:-$repo/charts/govcloud-operator/files/alerts.rules.yaml}"
ALERT_TESTS="${ALERT_TESTS:-$repo/charts/govcloud-operator/files/alerts.test.yaml}"

log() { printf '[check-alerts] %s\n' "$*"; }
die() { printf '[check-alerts] ERROR: %s\n' "$*" >&2; exit 1; }

if [ ! -x "$PROMTOOL_BIN" ]; then
  log "promtool missing; running hack/prometheus.sh build"
  "$here/prometheus.sh" build
fi
[ -f "$ALERT_RULES" ] || die "$ALERT_RULES not found"
[ -f "$ALERT_TESTS" ] || die "$ALERT_TESTS not found"
log "$("$PROMTOOL_BIN" --version 2>&1 | head -n 1)"

failed=0
log "promtool check rules ${ALERT_RULES#"$repo"/}"
if "$PROMTOOL_BIN" check rules "$ALERT_RULES"; then check=PASS; else check=FAIL; failed=1; fi

# promtool resolves rule_files relative to the test file's directory.
log "promtool test rules ${ALERT_TESTS#"$repo"/}"
if (cd "$(dirname "$ALERT_TESTS")" && "$PROMTOOL_BIN" test rules "$(basename "$ALERT_TESTS")"); then
  test=PASS
else
  test=FAIL; failed=1
fi

alerts="$(grep -cE '^[[:space:]]*-[[:space:]]*alert:' "$ALERT_RULES" || true)"
cases="$(grep -cE '^[[:space:]]*-[[:space:]]*eval_time:' "$ALERT_TESTS" || true)"
echo
printf '%-14s %-6s %s\n' "check" "result" "detail"
printf '%-14s %-6s %s\n' "check rules" "$check" "$alerts alerts in ${ALERT_RULES#"$repo"/}"
printf '%-14s %-6s %s\n' "test rules" "$test" "$cases evaluations in ${ALERT_TESTS#"$repo"/}"
[ "$failed" = 0 ] || die "alert rules check failed"
log "ok"
