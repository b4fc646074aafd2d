#!/usr/bin/env bash
# Images without the internet: builds the testbed's container images from this
# repository with hack/oci-image.py (no docker, no base images) and pushes them to the
# local registry (hack/registry.sh) for real nodes to pull through a containerd registry
# mirror for registry.gov.cn.
#
#   hack/images.sh [--push] [--oci-dir DIR] [--skip-operator]
#
#   --push           start the local registry if needed (hack/registry.sh up) and push
#   --oci-dir DIR    also write each image as an OCI layout tar into DIR
#                    (for "ctr -n k8s.io images import FILE")
#   --binaries-only  only the static release builds (no images; hack/test.sh starts this
#                    early, beside the control plane's build)
#   --skip-operator  only the sample-app images (the operator's, plugin's and gateway's
#                    release build is slow)
#   --velero-only    only registry.gov.cn/govcloud/velero (no cargo build; hack/velero.sh up
#                    pushes it when the registry lacks it)
#
# Without --push and --oci-dir it builds everything and prints the digests.
#
# The images (all linux/amd64, one layer, deterministic: same inputs, same digests):
#   - Every registry.gov.cn/... image named in examples/ (the catalog's and the systems'
#     images: registry.gov.cn/zj/open-data-web:2.3.1, registry.gov.cn/catalog/postgres:16.4,
#     ...). These are NOT the real applications: each is govcloud-sample-app
#     (operator/sample-app), a small HTTP server that stands in for them, with APP_NAME set
#     to the image's name and APP_VERSION to its tag. It listens on the first port the
#     example declares for that image (PORT; e.g. 5432 for postgres, which then speaks
#     HTTP, not the PostgreSQL protocol) and keeps its data in the example's storage
#     mountPath (DATA_DIR; default /data). Enough for scheduling, probes, Services,
#     NetworkPolicies, volumes and backups; not for anything that speaks SQL or Redis.
#   - registry.gov.cn/govcloud/pause:3.10     govcloud-sample-app pause (containerd's sandbox_image)
#   - registry.gov.cn/govcloud/crash:1        govcloud-sample-app crash (exits 1 after 1 s)
#   - registry.gov.cn/govcloud/busybox:1.35   Debian's static busybox: the local-path
#     provisioner's helper pods (create and remove volume directories on the real nodes)
#   - registry.gov.cn/govcloud/sample-app:1.0.0
#   - registry.gov.cn/govcloud/velero:$VELERO_VERSION   /velero and /velero-restore-helper
#     (hack/build-velero.sh's static builds) and a /scratch dir: Velero's node-agent on the
#     real nodes and the restore-wait init container of pods restored with file-system
#     backups (hack/velero.sh)
#   - registry.gov.cn/govcloud/govcloud-operator:<workspace version>: the operator's release
#     binary. Linked statically (glibc, -C target-feature=+crt-static, the same way as the
#     sample app; this links, jemalloc and ring included), so the image is the binary,
#     /etc/ssl/certs/ca-certificates.crt (rustls-platform-verifier reads the system roots),
#     /etc/passwd and /etc/group with the non-root user 65532, /etc/nsswitch.conf and /tmp.
#     Install the chart with image.repository=registry.gov.cn/govcloud/govcloud-operator.
#   - registry.gov.cn/govcloud/kubectl-govcloud:<version>: the kubectl plugin (entrypoint
#     /kubectl-govcloud), and registry.gov.cn/govcloud/govcloud-s3-gateway:<version>: the
#     encrypting S3 gateway; both static release builds made in the same cargo run as the
#     operator's.
# Every image runs as user 65532 (nonroot). The sample app binary is also static, so the
# images need no shared libraries.
#
# Environment:
#   IMAGES_HOST     registry host in the image names (default registry.gov.cn)
#   REGISTRY_PORT   local registry port (default 15000; see hack/registry.sh)
#   CARGO           cargo command (default cargo)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

IMAGES_HOST="${IMAGES_HOST:-registry.gov.cn}"
REGISTRY_PORT="${REGISTRY_PORT:-15000}"
CARGO="${CARGO:-cargo}"
TARGET="x86_64-unknown-linux-gnu"
STATIC_DIR="$CARGO_TARGET_DIR/$TARGET/release"

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

push=0 oci_dir="" skip_operator=0 binaries_only=0 velero_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --binaries-only) binaries_only=1;;
    --push) push=1;;
    --oci-dir) [ $# -ge 2 ] || die "--oci-dir needs a directory"; oci_dir="$2"; shift;;
    --skip-operator) skip_operator=1;;
    --velero-only) velero_only=1;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) die "unknown argument '$1' (see --help)";;
  esac
  shift
done

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

# cargo build --release, static glibc, stripped, of one or more packages (one cargo run:
# their shared dependencies are compiled once). Needs --target so that RUSTFLAGS do not
# apply to build scripts and proc macros.
static_build() {
  local pkgs=() p
  for p in "$@"; do pkgs+=(-p "$p"); done
  with_heartbeat "$* (release, static)" \
    env RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
    "$CARGO" build --release --locked --target "$TARGET" "${pkgs[@]}" --manifest-path "$repo/Cargo.toml"
}

check_static() {
  local bin="$1" out
  out="$(ldd "$bin" 2>&1 || true)"
  case "$out" in
    *"not a dynamic executable"*|*"statically linked"*) log "$(basename "$bin"): static ($(du -h "$bin" | cut -f1))";;
    *) die "$bin is dynamically linked: $out";;
  esac
}

# Images named in examples/: prints "REF PORT DATA_DIR" per image (port and storage
# mountPath from the first place the image is declared; defaults 8080 and /data).
example_images() {
  python3 - "$repo/examples" "$IMAGES_HOST" <<'EOF'
import os, re, sys
root, host = sys.argv[1], sys.argv[2]
ref_re = re.compile(r"(?<![\w./-])" + re.escape(host) + r"/[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*")
found = {}
for dirpath, _, files in sorted(os.walk(root)):
    for name in sorted(files):
        lines = open(os.path.join(dirpath, name), encoding="utf-8").read().splitlines()
        for i, line in enumerate(lines):
            for ref in ref_re.findall(line):
                port, data = None, None
                m = re.match(r"^(\s*)(- )?image:\s", line)
                if m:
                    # Sibling keys of the image's mapping: the following lines indented at
                    # least as far as "image:", up to the next list item at that level.
                    indent = len(m.group(1)) + len(m.group(2) or "")
                    for nxt in lines[i + 1:]:
                        stripped = nxt.lstrip()
                        if not stripped or stripped.startswith("#"):
                            continue
                        ind = len(nxt) - len(stripped)
                        if ind < indent or (ind == indent and stripped.startswith("- ")):
                            break
                        if port is None:
                            pm = re.search(r"\bport:\s*(\d+)", nxt)
                            if pm and "ports" in nxt:
                                port = pm.group(1)
                        if data is None:
                            dm = re.search(r"\bmountPath:\s*([^\s,}]+)", nxt)
                            if dm:
                                data = dm.group(1)
                prev = found.get(ref)
                if prev is None or (prev == ("8080", "/data") and (port or data)):
                    found[ref] = (port or "8080", data or "/data")
for ref in sorted(found):
    print(ref, *found[ref])
EOF
}

PASSWD='root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
'
GROUP='root:x:0:
nonroot:x:65532:
'
NSSWITCH='passwd: files
group: files
hosts: files dns
'

results=()

# image REF OCI-IMAGE-ARGS... — build (and push / write) one image.
image() {
  local ref="$1"; shift
  local args=(--ref "$ref"
    --text "/etc/passwd=$PASSWD" --text "/etc/group=$GROUP" --text "/etc/nsswitch.conf=$NSSWITCH"
    --dir /tmp:1777 --dir /home/nonroot:0700:65532:65532
    --user 65532:65532 "$@")
  if [ "$push" = 1 ]; then args+=(--push "127.0.0.1:$REGISTRY_PORT"); fi
  if [ -n "$oci_dir" ]; then
    local f="${ref#*/}"; f="${f//\//_}"; f="${f//:/_}"
    args+=(--oci-tar "$oci_dir/$f.tar")
  fi
  local out
  out="$(python3 "$here/oci-image.py" --json "${args[@]}")" || die "building $ref failed"
  results+=("$(jq -r '"\(.ref)\t\(.digest)\t\(.size)\t\(.uploaded | if length == 0 then "-" else join(",") end)"' <<<"$out")")
  log "$(jq -r '"\(.ref) \(.digest) \(.size) bytes"' <<<"$out")"
}

# A govcloud-sample-app image: image_app REF ENTRYPOINT-JSON PORT DATA_DIR
image_app() {
  local ref="$1" entry="$2" port="$3" data="$4"
  local name="${ref#*/}" tag="${ref##*:}"
  name="${name%:*}"
  local dirs=(--dir "/data:0755:65532:65532")
  [ "$data" = /data ] || dirs+=(--dir "$data:0755:65532:65532")
  image "$ref" \
    --file "$STATIC_DIR/govcloud-sample-app:/govcloud-sample-app:0755" \
    "${dirs[@]}" \
    --entrypoint "$entry" \
    --env "APP_NAME=$name" --env "APP_VERSION=$tag" --env "PORT=$port" --env "DATA_DIR=$data" \
    --expose "$port/tcp" \
    --label "org.opencontainers.image.title=$name" \
    --label "org.opencontainers.image.version=$tag" \
    --label "org.opencontainers.image.description=govcloud-sample-app standing in for $ref (not the real application)" \
    --comment "govcloud-sample-app as $ref"
}

# Velero for the real nodes (hack/velero.sh): the node-agent DaemonSet (file-system backups
# with kopia) and the restore helper init container of restored pods. The same static
# binaries as the out-of-cluster servers (hack/build-velero.sh, cached).
image_velero() {
  if [ ! -x "$VELERO_BIN/velero" ] || [ ! -x "$VELERO_BIN/velero-restore-helper" ]; then
    bash "$here/build-velero.sh" || die "building Velero failed (hack/build-velero.sh)"
  fi
  image "$IMAGES_HOST/govcloud/velero:$VELERO_VERSION" \
    --file "$VELERO_BIN/velero:/velero:0755" \
    --file "$VELERO_BIN/velero-restore-helper:/velero-restore-helper:0755" \
    --dir /scratch:1777 --dir /root:0700 \
    --entrypoint '["/velero"]' \
    --label "org.opencontainers.image.title=velero" \
    --label "org.opencontainers.image.version=$VELERO_VERSION" \
    --comment "velero $VELERO_VERSION and velero-restore-helper, static builds (hack/build-velero.sh)"
}

main() {
  local start=$SECONDS
  for b in python3 jq ldd; do command -v "$b" >/dev/null || die "$b is required"; done
  if [ -n "$oci_dir" ]; then mkdir -p "$oci_dir"; oci_dir="$(cd "$oci_dir" && pwd)"; fi
  if [ "$velero_only" = 1 ]; then
    if [ "$push" = 1 ] || [ -z "$oci_dir" ]; then push=1; "$here/registry.sh" up; fi
    image_velero
    printf '%s\n' "${results[@]}"
    return 0
  fi
  static_build govcloud-sample-app
  check_static "$STATIC_DIR/govcloud-sample-app"
  if [ "$skip_operator" = 0 ]; then
    static_build govcloud-operator kubectl-govcloud govcloud-gateway
    for b in govcloud-operator kubectl-govcloud govcloud-s3-gateway; do check_static "$STATIC_DIR/$b"; done
  fi
  if [ "$binaries_only" = 1 ]; then log "binaries built in $((SECONDS - start))s"; return 0; fi
  if [ "$push" = 1 ]; then "$here/registry.sh" up; fi

  local ref port data
  while read -r ref port data; do
    image_app "$ref" '["/govcloud-sample-app"]' "$port" "$data"
  done < <(example_images)
  image_app "$IMAGES_HOST/govcloud/sample-app:1.0.0" '["/govcloud-sample-app"]' 8080 /data
  image_app "$IMAGES_HOST/govcloud/pause:3.10" '["/govcloud-sample-app","pause"]' 8080 /data
  image_app "$IMAGES_HOST/govcloud/crash:1" '["/govcloud-sample-app","crash"]' 8080 /data
  # The helper image of the local-path provisioner (hack/realnode.sh): Debian's static
  # busybox with the applets its setup/teardown scripts use; runs as root (it creates and
  # removes directories under the node's volume path).
  if ! dpkg -s busybox-static >/dev/null 2>&1; then
    apt-get install -y -qq busybox-static >/dev/null || die "busybox-static is needed for the busybox image"
  fi
  local applet links=()
  for applet in sh mkdir rm ls cat sleep chmod; do links+=(--symlink "/bin/$applet:busybox"); done
  image "$IMAGES_HOST/govcloud/busybox:1.35" \
    --file "/bin/busybox:/bin/busybox:0755" "${links[@]}" \
    --user 0:0 --entrypoint '["/bin/sh"]' \
    --label "org.opencontainers.image.title=busybox" --comment "Debian busybox-static"

  image_velero

  if [ "$skip_operator" = 0 ]; then
    local version
    version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")"
    [ -n "$version" ] || die "cannot read the workspace version from Cargo.toml"
    image "$IMAGES_HOST/govcloud/govcloud-operator:$version" \
      --file "$STATIC_DIR/govcloud-operator:/govcloud-operator:0755" \
      --file "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644" \
      --entrypoint '["/govcloud-operator"]' \
      --label "org.opencontainers.image.title=govcloud-operator" \
      --label "org.opencontainers.image.version=$version" \
      --comment "govcloud-operator $version, static release build"
    # The kubectl plugin, for running it where kubectl plugins cannot be installed (a CI job,
    # a CronJob that makes monthly evidence reports): `kubectl-govcloud` is the entrypoint.
    image "$IMAGES_HOST/govcloud/kubectl-govcloud:$version" \
      --file "$STATIC_DIR/kubectl-govcloud:/kubectl-govcloud:0755" \
      --file "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644" \
      --entrypoint '["/kubectl-govcloud"]' \
      --label "org.opencontainers.image.title=kubectl-govcloud" \
      --label "org.opencontainers.image.version=$version" \
      --comment "kubectl-govcloud $version, static release build"
    # The encrypting S3 gateway (SM4-GCM, per-agency keys): configuration and key Secrets
    # are mounted (examples/backup/gateway.yaml).
    image "$IMAGES_HOST/govcloud/govcloud-s3-gateway:$version" \
      --file "$STATIC_DIR/govcloud-s3-gateway:/govcloud-s3-gateway:0755" \
      --file "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644" \
      --entrypoint '["/govcloud-s3-gateway"]' --expose "9000/tcp" \
      --label "org.opencontainers.image.title=govcloud-s3-gateway" \
      --label "org.opencontainers.image.version=$version" \
      --comment "govcloud-s3-gateway $version, static release build"
  fi

  echo
  if [ "$push" = 1 ]; then
    printf '%s\n' "Pushed to http://127.0.0.1:$REGISTRY_PORT (repository = the path after $IMAGES_HOST):"
  else
    printf '%s\n' "Built (not pushed; use --push):"
  fi
  {
    printf 'IMAGE\tDIGEST\tSIZE\tUPLOADED\n'
    printf '%s\n' "${results[@]}"
  } | column -t -s $'\t'
  [ -z "$oci_dir" ] || printf 'OCI layout tars in %s\n' "$oci_dir"
  log "done in $((SECONDS - start))s"
}

main
