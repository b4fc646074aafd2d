# Versions and cache locations of the local control plane. Sourced by hack/*.sh.
# shellcheck shell=bash
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"

GOVCLOUD_CACHE="${GOVCLOUD_CACHE:-$HOME/.cache/govcloud}"
K8S_BIN="$GOVCLOUD_CACHE/bin/kubernetes-$K8S_VERSION"
ETCD_BIN="$GOVCLOUD_CACHE/bin/etcd-$ETCD_VERSION"
KWOK_BIN="$GOVCLOUD_CACHE/bin/kwok-$KWOK_VERSION"
