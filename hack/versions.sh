# Versions and cache locations of the local control plane. Sourced by hack/*.sh.
# shellcheck disable=SC2034  # sourced: the variables are used by the scripts that source it
# shellcheck shell=bash
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"

GOVCLOUD_CACHE="${GOVCLOUD_CACHE:-$HOME/.cache/govcloud}"
# Cargo's build output, outside the repository like the other built binaries, so that a
# fresh clone (CI) reuses it; set CARGO_TARGET_DIR to build elsewhere (e.g. ./target).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$GOVCLOUD_CACHE/cargo-target}"
K8S_BIN="$GOVCLOUD_CACHE/bin/kubernetes-$K8S_VERSION"
ETCD_BIN="$GOVCLOUD_CACHE/bin/etcd-$ETCD_VERSION"
KWOK_BIN="$GOVCLOUD_CACHE/bin/kwok-$KWOK_VERSION"

# Velero (backups) and its local S3-compatible object store; built by hack/build-velero.sh.
# velero-plugin-for-aws v1.13.x (Velero 1.17's pair) is not served by the module proxy here.
VELERO_VERSION="${VELERO_VERSION:-v1.17.2}"
VELERO_AWS_PLUGIN_VERSION="${VELERO_AWS_PLUGIN_VERSION:-v1.14.3}"
S3S_FS_VERSION="${S3S_FS_VERSION:-0.14.1}"
VELERO_BIN="$GOVCLOUD_CACHE/bin/velero-$VELERO_VERSION"
VELERO_AWS_PLUGIN_BIN="$GOVCLOUD_CACHE/bin/velero-plugin-for-aws-$VELERO_AWS_PLUGIN_VERSION"
S3S_FS_BIN="$GOVCLOUD_CACHE/bin/s3s-fs-$S3S_FS_VERSION"

# Prometheus and promtool (Prometheus 2.42) from Debian bookworm's "prometheus" package,
# downloaded with apt-get download and extracted with dpkg -x (never installed) by
# hack/prometheus.sh build. PROMETHEUS_BIN and PROMTOOL_BIN are the binaries themselves.
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-2.42.0+ds-5+deb12u1}"
PROMETHEUS_DIR="$GOVCLOUD_CACHE/bin/prometheus-$PROMETHEUS_VERSION"
PROMETHEUS_BIN="$PROMETHEUS_DIR/usr/bin/prometheus"
PROMTOOL_BIN="$PROMETHEUS_DIR/usr/bin/promtool"

# Helm (chart lint/template/install in the tests), built from the Go module proxy by
# hack/build-helm.sh into $HELM_BIN/helm.
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
HELM_BIN="$GOVCLOUD_CACHE/bin/helm-$HELM_VERSION"

# Image registry (distribution, "registry:3") for images without the internet; built from the
# Go module proxy by hack/registry.sh build into $REGISTRY_BIN/registry. Used by hack/images.sh.
REGISTRY_VERSION="${REGISTRY_VERSION:-v3.1.2}"
REGISTRY_BIN="$GOVCLOUD_CACHE/bin/registry-$REGISTRY_VERSION"

# Real nodes (hack/realnode.sh): kubelet and kube-proxy are built with the control plane
# (hack/build-testbed.sh); kube-router's firewall enforces NetworkPolicies with iptables +
# ipset. containerd, runc and the CNI plugins come from Debian's packages.
KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-v2.1.0}"
KUBE_ROUTER_BIN="$GOVCLOUD_CACHE/bin/kube-router-$KUBE_ROUTER_VERSION"

# The real nodes' dynamic volume provisioner (hack/realnode.sh): rancher's local-path
# provisioner, out-of-cluster. v0.0.31 and v0.0.32 are refused by the module proxy here (403).
LOCAL_PATH_VERSION="${LOCAL_PATH_VERSION:-v0.0.30}"
LOCAL_PATH_BIN="$GOVCLOUD_CACHE/bin/local-path-provisioner-$LOCAL_PATH_VERSION"
