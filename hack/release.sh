#!/usr/bin/env bash
# Release artifacts of one version, built from this checkout without the internet (beyond
# crates.io and the Go module proxy for the first builds), into target/release-artifacts/:
#
#   govcloud-operator_<v>_linux_amd64.tar.gz     the operator (static), LICENSE, README
#   kubectl-govcloud_<v>_linux_amd64.tar.gz      the kubectl plugin (static), LICENSE
#   govcloud-s3-gateway_<v>_linux_amd64.tar.gz   the encrypting S3 gateway (static), LICENSE
#   govcloud-operator-<v>.tgz                    the Helm chart (helm package; CRDs inside)
#   govcloud-s3-gateway-<v>.tgz                  the gateway's Helm chart (helm package)
#   crds.yaml                                    the CRDs (`govcloud-operator crd`), one file
#   member-rbac.yaml                             the member manifest (for member clusters)
#   krew/govcloud.yaml                           krew plugin manifest (uri under RELEASE_URL,
#                                                sha256 of the plugin archive above)
#   images/*.tar                                 the images as OCI layout tars (operator,
#                                                plugin, gateway; `ctr images import`, skopeo)
#   SHA256SUMS                                   of everything above
#
#   hack/release.sh [--no-images]
#
# Environment: RELEASE_URL (where the archives will be published; default the repository's
# releases page for the version), CARGO (cargo). The binaries are the same static release
# builds hack/images.sh makes (same flags, same cache: built once).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
here="$repo/hack"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

log() { printf '[release %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[release] ERROR: %s\n' "$*" >&2; exit 1; }

images=1
case "${1:-}" in
  --no-images) images=0 ;;
  "") ;;
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (see --help)" ;;
esac

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
[ -n "$version" ] || die "cannot read the workspace version from Cargo.toml"
chart_version="$(sed -n 's/^version: *//p' charts/govcloud-operator/Chart.yaml)"
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/govcloud-operator/Chart.yaml)"
[ "$app_version" = "$version" ] || die "Chart.yaml appVersion $app_version is not the workspace version $version"
repo_url="$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml)"
RELEASE_URL="${RELEASE_URL:-$repo_url/releases/download/v$version}"
CARGO="${CARGO:-cargo}"
TARGET="x86_64-unknown-linux-gnu"
bin_dir="$CARGO_TARGET_DIR/$TARGET/release"
out="$repo/target/release-artifacts"
rm -rf "$out"; mkdir -p "$out/krew"

log "version $version (chart $chart_version) into $out"
log "static release builds (operator, plugin, gateway; warm after hack/images.sh)"
env RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
  "$CARGO" build --release --locked --target "$TARGET" \
  -p govcloud-operator -p kubectl-govcloud -p govcloud-gateway --quiet

# A reproducible tar.gz of FILES (fixed owner, mode and mtime; sorted).
archive() {
  local name="$1"; shift
  local stage; stage="$(mktemp -d)"
  cp "$@" "$stage/"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2026-01-01 00:00:00Z' \
    -C "$stage" -cf - . | gzip -n -9 >"$out/$name"
  rm -rf "$stage"
  log "$name ($(du -h "$out/$name" | cut -f1))"
}
archive "govcloud-operator_${version}_linux_amd64.tar.gz" "$bin_dir/govcloud-operator" LICENSE README.md
archive "kubectl-govcloud_${version}_linux_amd64.tar.gz" "$bin_dir/kubectl-govcloud" LICENSE
archive "govcloud-s3-gateway_${version}_linux_amd64.tar.gz" "$bin_dir/govcloud-s3-gateway" LICENSE

log "CRDs and the member manifest"
"$bin_dir/govcloud-operator" crd >"$out/crds.yaml"
for f in crds/*.yaml; do
  cmp -s "$f" "charts/govcloud-operator/crds/$(basename "$f")" || die "$f differs from the chart's copy (regenerate: docs/development.md)"
done
bash "$here/chart.sh" template --set rbac.hubIsMember=true --show-only templates/member-rbac.yaml >"$out/member-rbac.yaml" 2>/dev/null

log "Helm chart packages"
helm="$("$here/build-helm.sh")"
for c in govcloud-operator govcloud-s3-gateway; do
  v="$(sed -n 's/^version: *//p' "charts/$c/Chart.yaml")"
  HELM_CACHE_HOME="$GOVCLOUD_CACHE/helm/cache" HELM_CONFIG_HOME="$GOVCLOUD_CACHE/helm/config" \
    HELM_DATA_HOME="$GOVCLOUD_CACHE/helm/data" \
    "$helm" package "charts/$c" --destination "$out" >/dev/null
  [ -f "$out/$c-$v.tgz" ] || die "helm package did not write $c-$v.tgz"
done

log "krew plugin manifest"
plugin_sha="$(sha256sum "$out/kubectl-govcloud_${version}_linux_amd64.tar.gz" | cut -d' ' -f1)"
cat >"$out/krew/govcloud.yaml" <<EOF
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: govcloud
spec:
  version: v$version
  homepage: $repo_url
  shortDescription: Agency private clouds of a government data center (govcloud-operator)
  description: |
    Request, approve and deny agency private clouds (TenancyRequests), see an agency's
    cloud at a glance, export utilization reports and verify SM2-signed evidence reports
    of govcloud-operator. Static linux/amd64 binary.
  platforms:
  - selector:
      matchLabels: {os: linux, arch: amd64}
    uri: $RELEASE_URL/kubectl-govcloud_${version}_linux_amd64.tar.gz
    sha256: $plugin_sha
    bin: kubectl-govcloud
    files:
    - {from: kubectl-govcloud, to: .}
    - {from: LICENSE, to: .}
EOF

if [ "$images" = 1 ]; then
  log "images as OCI layout tars (hack/images.sh --oci-dir)"
  mkdir -p "$out/images.all"
  bash "$here/images.sh" --oci-dir "$out/images.all" >/dev/null
  mkdir -p "$out/images"
  for f in "$out"/images.all/govcloud_govcloud-operator_* "$out"/images.all/govcloud_kubectl-govcloud_* \
           "$out"/images.all/govcloud_govcloud-s3-gateway_*; do
    [ -f "$f" ] || die "image tar $f missing"
    mv "$f" "$out/images/"
  done
  rm -rf "$out/images.all"
fi

(cd "$out" && find . -type f ! -name SHA256SUMS | sed 's#^\./##' | sort | xargs sha256sum >SHA256SUMS)
log "done:"
(cd "$out" && sort -k2 SHA256SUMS | awk '{print "  " $2}')
