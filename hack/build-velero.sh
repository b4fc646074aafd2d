#!/usr/bin/env bash
# Build Velero and its local object store from the package registries into a
# cache outside the repository (never committed):
#   velero                  server, CLI and node-agent (github.com/vmware-tanzu/velero)
#                           -> $VELERO_BIN/velero, and its restore helper (the init
#                           container of pods restored with file-system data)
#                           -> $VELERO_BIN/velero-restore-helper
#   velero-plugin-for-aws   object-store plugin (S3 API)
#                           -> $VELERO_AWS_PLUGIN_BIN/velero-plugin-for-aws
#                           (its own directory: it is velero server's --plugin-dir,
#                           which must hold plugin executables only)
#   s3s-fs                  S3-compatible server on a local directory (crates.io)
#                           -> $S3S_FS_BIN/bin/s3s-fs
# Cached by version: a second run finds the binaries and returns at once.
#
# Versions (hack/versions.sh): Velero v1.17.2 is the newest 1.17 patch the Go
# module proxy serves. velero-plugin-for-aws v1.13.x (the official pair of
# Velero 1.17) is NOT served by the module proxy here (403 "not available"),
# so the default is v1.14.3, the newest served; it registers only the
# ObjectStore and VolumeSnapshotter plugin kinds, whose gRPC API is unchanged
# between Velero 1.17 and 1.18, and the backup/restore round trip is verified
# with it (hack/velero.sh). s3s-fs 0.14.1 is the newest that builds with
# Rust 1.95.
#
# Environment:
#   GOVCLOUD_CACHE             cache root (default ~/.cache/govcloud)
#   VELERO_VERSION             default v1.17.2
#   VELERO_AWS_PLUGIN_VERSION  default v1.14.3
#   S3S_FS_VERSION             default 0.14.1
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

log() { printf '[build-velero %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
export GOTOOLCHAIN=local

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

# The module's `replace` directives that point at another module version (not
# at a local path), one per line as "OLD => NEW VERSION".
module_replaces() {
  awk '
    /^replace \(/ { r = 1; next }
    r && /^\)/    { r = 0; next }
    r             { print; next }
    /^replace /   { sub(/^replace /, ""); print }
  ' "$1" | sed 's/[[:space:]]*\/\/.*$//' | awk 'NF >= 4 && $(NF - 1) !~ /^\.\.?\// && $NF !~ /^\.\.?\//'
}

# The wrapper module that builds Velero's commands (in $GOVCLOUD_CACHE/src); prints the
# module's hash (for buildinfo.GitSHA).
velero_module() {
  local wd="$1" info moddir modfile sha
  mkdir -p "$wd"
  log "velero $VELERO_VERSION: downloading module"
  info="$(cd "$wd" && go mod download -json "github.com/vmware-tanzu/velero@$VELERO_VERSION")"
  moddir="$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' <<<"$info")"
  modfile="$moddir/go.mod"
  sha="$(sed -n 's/.*"Hash": "\(.*\)".*/\1/p' <<<"$info" | head -n 1)"
  [ -f "$modfile" ] || { log "cannot find go.mod of github.com/vmware-tanzu/velero@$VELERO_VERSION"; return 1; }
  # go.mod's `replace` lines only apply in the main module: copy them (the
  # kopia fork) into a throwaway wrapper module.
  {
    echo "module govcloud.local/velerobuild"
    echo
    echo "go $(awk '$1 == "go" {print $2; exit}' "$modfile")"
    echo
    echo "require github.com/vmware-tanzu/velero $VELERO_VERSION"
    echo
    module_replaces "$modfile" | sed 's/^/replace /'
  } > "$wd/go.mod"
  # Velero's go.sum too: the checksum database does not know the kopia fork's
  # pseudo-version (sum.golang.org lookup: 404), Velero's go.sum does.
  cp "$moddir/go.sum" "$wd/go.sum" && chmod u+w "$wd/go.sum"
  log "velero: wrapper module with $(grep -c '^replace' "$wd/go.mod") replace(s): $(grep '^replace' "$wd/go.mod" | tr '\n' ' ')" >&2
  echo "${sha:-unknown}"
}

# velero (server, CLI, node-agent) and velero-restore-helper (the init container that
# restored pods wait in until their file-system restores are done; in the image of
# hack/images.sh), both static (CGO off) in $VELERO_BIN. Each is built when missing.
build_velero() {
  local out="$VELERO_BIN"
  if [ -x "$out/velero" ] && [ -x "$out/velero-restore-helper" ]; then
    log "velero $VELERO_VERSION: cached in $out"; return 0
  fi
  local wd="$GOVCLOUD_CACHE/src/velero-$VELERO_VERSION" sha
  sha="$(velero_module "$wd")"
  local pkg=github.com/vmware-tanzu/velero
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  if [ -x "$out/velero" ]; then
    cp -p "$out/velero" "$out.tmp/velero"
  else
    # velero server builds its controller-runtime manager without metrics options,
    # so controller-runtime would also serve metrics on 0.0.0.0:8080 (one port for
    # every server on the machine, on every interface). Its default bind address
    # is a plain string variable: "0" switches that second metrics server off.
    # Velero's own metrics stay on --metrics-address.
    local ldflags="-s -w -X $pkg/pkg/buildinfo.Version=$VELERO_VERSION \
      -X $pkg/pkg/buildinfo.GitSHA=$sha -X $pkg/pkg/buildinfo.GitTreeState=clean \
      -X $pkg/pkg/buildinfo.ImageRegistry=velero \
      -X sigs.k8s.io/controller-runtime/pkg/metrics/server.DefaultBindAddress=0"
    (cd "$wd" && with_heartbeat "velero $VELERO_VERSION" go build -mod=mod -trimpath -ldflags "$ldflags" \
      -o "$out.tmp/velero" "$pkg/cmd/velero")
  fi
  (cd "$wd" && with_heartbeat "velero-restore-helper $VELERO_VERSION" go build -mod=mod -trimpath -ldflags "-s -w" \
    -o "$out.tmp/velero-restore-helper" "$pkg/cmd/velero-restore-helper")
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_aws_plugin() {
  local out="$VELERO_AWS_PLUGIN_BIN"
  if [ -x "$out/velero-plugin-for-aws" ]; then
    log "velero-plugin-for-aws $VELERO_AWS_PLUGIN_VERSION: cached in $out"; return 0
  fi
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  with_heartbeat "velero-plugin-for-aws $VELERO_AWS_PLUGIN_VERSION" env GOBIN="$out.tmp" \
    go install -trimpath -ldflags "-s -w" \
    "github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws@$VELERO_AWS_PLUGIN_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_s3s_fs() {
  local out="$S3S_FS_BIN"
  if [ -x "$out/bin/s3s-fs" ]; then log "s3s-fs $S3S_FS_VERSION: cached in $out"; return 0; fi
  command -v cargo >/dev/null || { log "cargo is required to build s3s-fs"; return 1; }
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  # A private target dir in the cache (cargo would otherwise use a temporary one).
  with_heartbeat "s3s-fs $S3S_FS_VERSION" env CARGO_TARGET_DIR="$GOVCLOUD_CACHE/src/s3s-fs-$S3S_FS_VERSION-target" \
    cargo install "s3s-fs@$S3S_FS_VERSION" --features binary --locked --root "$out.tmp" --quiet
  rm -f "$out.tmp/.crates.toml" "$out.tmp/.crates2.json"
  rm -rf "$out" && mv "$out.tmp" "$out"
  rm -rf "$GOVCLOUD_CACHE/src/s3s-fs-$S3S_FS_VERSION-target"
}

main() {
  local start=$SECONDS
  mkdir -p "$GOVCLOUD_CACHE"
  log "cache: $GOVCLOUD_CACHE (outside the repository)"
  build_s3s_fs
  build_aws_plugin
  build_velero
  log "velero binaries ready in $((SECONDS - start))s:"
  log "  $VELERO_BIN/velero"
  log "  $VELERO_BIN/velero-restore-helper"
  log "  $VELERO_AWS_PLUGIN_BIN/velero-plugin-for-aws"
  log "  $S3S_FS_BIN/bin/s3s-fs"
}

main "$@"
