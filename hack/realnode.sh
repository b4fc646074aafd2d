# Real nodes of the testbed: sourced by hack/testbed.sh (uses its helpers and variables).
# shellcheck shell=bash
# shellcheck disable=SC2154  # client_ext, KC_CLUSTER helpers and ports come from hack/testbed.sh
#
# Cluster dcN (N <= TESTBED_REAL_NODES) gets one real node "dcN-real" beside its KWOK
# nodes: containerd + runc + the CNI bridge/host-local/portmap plugins (Debian's packages),
# kubelet and kube-proxy (iptables mode; built from the same Kubernetes module as the
# control plane) and kube-router's NetworkPolicy firewall (iptables + ipset).
#
# Network layout (nothing routes off the machine):
#   - the node lives in its own network namespace NODE_NETNS, joined to the host by one
#     veth pair: host side 10.87.N.1/30, node side 10.87.N.2/30 (the node's InternalIP);
#   - pods get 10.88.N.0/24 on the bridge gcbr0 inside the node's namespace;
#   - the node's namespace has NO default route: a packet to anything but the host side
#     of the veth, the node itself or its pods has no route and is dropped there; the host
#     keeps ip_forward as it is (0 here) and, in case something enables it, drops
#     forwarded packets from 10.88.0.0/16 (rule commented "govcloud-testbed");
#   - the API server stays on 127.0.0.1; socat (PID files, like every component) forwards
#     10.87.N.1:<api port> and 10.87.N.1:<registry port> to it, for the node's components,
#     for pods (the "kubernetes" Service's EndpointSlice names 10.87.N.1) and for image pulls;
#   - the node is labelled govcloud.io/node-kind=real and tainted
#     govcloud.io/node-kind=real:NoSchedule, so only pods that ask for it run there (the
#     KWOK nodes keep carrying the scale tests). A namespace annotated with
#     scheduler.alpha.kubernetes.io/node-selector=govcloud.io/node-kind=real and the
#     matching defaultTolerations (PodNodeSelector, PodTolerationRestriction) puts all its
#     pods there: `hack/testbed.sh pin-namespace dcN NS`.
#   - host stores: a process listening on the host's 127.0.0.1:P, P in TESTBED_HOST_PORTS
#     (default 17000:17099: the Velero object stores of hack/velero.sh, the tests' own stores
#     and gateways), is reachable as http://127.0.0.1:P from the node's own network namespace
#     (the node's processes and hostNetwork pods: Velero's node-agent reads the same
#     BackupStorageLocation URLs as the out-of-cluster Velero server). In the node's namespace
#     nat OUTPUT rewrites 127.0.0.1:P to 10.87.N.1:P and POSTROUTING the source to 10.87.N.2
#     (route_localnet on its eth0); on the host nat PREROUTING rewrites exactly that
#     (-s 10.87.N.2 -d 10.87.N.1) to 127.0.0.1:P (route_localnet on the host side of the
#     veth). Ordinary pods keep their 10.88.N.x source (the bridge does not masquerade), match
#     neither rule and are dropped by the host's INPUT rules: they cannot reach the stores.
#
# Volumes (ensure_local_path): the local-path StorageClass provisions `local`
# PersistentVolumes (directories under the node's state dir), not hostPath ones: Velero's
# file-system backup skips hostPath volumes. Kubelet's root dir is a bind mount of itself made
# rshared before kubelet starts (this machine's / is a private mount), so that a volume
# kubelet mounts for a pod shows in Velero's node-agent (hostPath <root>/pods with
# mountPropagation HostToContainer); `down` unmounts everything under the node's dir before
# the state dir is removed, and refuses to remove it while a mount is left there.

REAL_NODE_LABEL="govcloud.io/node-kind"
REGISTRY_PORT="${REGISTRY_PORT:-15000}"
REAL_COMPONENTS=(node-apifwd node-regfwd containerd kubelet kube-proxy kube-router local-path)
# Host ports (first:last) on 127.0.0.1 that the real nodes' own network namespaces reach as
# 127.0.0.1 too (see the top). Velero's metrics ports (17100, 17200, ...) are outside it.
TESTBED_HOST_PORTS="${TESTBED_HOST_PORTS:-17000:17099}"

real_node_enabled() { local i="${1#dc}"; [ "$i" -le "${TESTBED_REAL_NODES:-2}" ]; }
real_node_name() { echo "$1-real"; }

# A short tag of the state dir, so that two testbeds never share a namespace or a link.
state_tag() { printf '%s' "$TESTBED_STATE" | sha1sum | cut -c1-5; }
node_netns() { echo "gc$(state_tag)-$1"; }
host_link() { echo "gc$(state_tag)${1#dc}h"; }
host_addr() { echo "10.87.${1#dc}.1"; }
node_addr() { echo "10.87.${1#dc}.2"; }
pod_cidr() { echo "10.88.${1#dc}.0/24"; }
pod_gateway() { echo "10.88.${1#dc}.1"; }
cgroup_root() { echo "/govcloud-$(state_tag)-$1"; }

# The host-side addresses of every possible real node (dc1..dc9): each cluster's API
# server is reachable from every real node's pods (an operator in a pod on the hub's node
# talks to the members), so each serving certificate names them all.
real_node_sans() { local i out=""; for i in 1 2 3 4 5 6 7 8 9; do out+="IP:10.87.$i.1,"; done; echo "${out%,}"; }

in_node() { nsenter --net="/run/netns/$(node_netns "$1")" -- "${@:2}"; }

real_node_prereqs() {
  local b absent=()
  for b in containerd containerd-shim-runc-v2 runc ctr socat nsenter ip iptables ipset; do
    command -v "$b" >/dev/null || absent+=("$b")
  done
  [ -x /usr/lib/cni/bridge ] || absent+=("/usr/lib/cni/bridge")
  if [ ${#absent[@]} -gt 0 ]; then
    log "real nodes: installing Debian packages (missing: ${absent[*]})"
    apt-get install -y -qq containerd runc containernetworking-plugins socat ipset iptables iproute2 util-linux \
      >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && \
      apt-get install -y -qq containerd runc containernetworking-plugins socat ipset iptables iproute2 util-linux >/dev/null; } \
      || die "real nodes need containerd runc containernetworking-plugins socat ipset (apt-get install failed)"
  fi
  [ "$(id -u)" = 0 ] || die "real nodes need root (network namespaces, cgroups, mounts); TESTBED_REAL_NODES=0 starts KWOK nodes only"
}

# PKI for the node: kubelet and kube-proxy client certificates, and the API server's
# client certificate towards kubelets. Written once per cluster.
gen_node_pki() {
  local name="$1" pki; pki="$(cluster_dir "$name")/pki"
  [ -f "$pki/.node-complete" ] && return 0
  sign_cert "$pki" kubelet "/O=system:nodes/CN=system:node:$(real_node_name "$name")" "$client_ext"
  sign_cert "$pki" kube-proxy "/CN=system:kube-proxy" "$client_ext"
  sign_cert "$pki" kube-router "/O=system:masters/CN=kube-router" "$client_ext"
  touch "$pki/.node-complete"
}

setup_node_network() {
  local name="$1" ns link; ns="$(node_netns "$name")"; link="$(host_link "$name")"
  if [ ! -e "/run/netns/$ns" ]; then
    ip netns add "$ns"
  fi
  if ! ip link show "$link" >/dev/null 2>&1; then
    if ip -4 addr show | grep -q "inet $(host_addr "$name")/"; then
      die "$name: $(host_addr "$name") is already on another interface of this machine; not creating the real node"
    fi
    ip link add "$link" type veth peer name eth0 netns "$ns"
    ip addr add "$(host_addr "$name")/30" dev "$link"
    ip link set "$link" up
    in_node "$name" ip addr add "$(node_addr "$name")/30" dev eth0
    in_node "$name" ip link set eth0 up
    in_node "$name" ip link set lo up
    # Replies from the host to pods (API server forward, registry forward).
    ip route replace "$(pod_cidr "$name")" via "$(node_addr "$name")" dev "$link"
  fi
  # Service IPs from the node itself: kube-proxy's OUTPUT rules rewrite them to pod IPs, but
  # the first route lookup needs a route: the loopback device (this kernel has no dummy
  # links), so that a service IP without endpoints goes nowhere, not even to the host.
  in_node "$name" ip route replace "$SERVICE_CIDR" dev lo
  # Inside the node: forward between pods and the host; bridged pod traffic through
  # iptables (kube-proxy, kube-router). Per-namespace settings. Without bridge netfilter no
  # NetworkPolicy holds between pods of one node: stop rather than run unenforced.
  in_node "$name" sysctl -qw net.ipv4.ip_forward=1
  in_node "$name" sysctl -qw net.bridge.bridge-nf-call-iptables=1 ||
    die "$name: cannot enable net.bridge.bridge-nf-call-iptables in the node's namespace (br_netfilter): NetworkPolicies would not be enforced"
  # Belt and braces on the host: nothing is ever forwarded to or from the node's link
  # (should ip_forward be on), and the node and its pods reach only the forwarded ports
  # (API servers, registry) of the host, nothing else listening there.
  local tag d
  tag="govcloud-testbed-$(state_tag)"
  for d in -i -o; do
    iptables -w -C FORWARD "$d" "$link" -m comment --comment "$tag" -j DROP 2>/dev/null ||
      iptables -w -I FORWARD "$d" "$link" -m comment --comment "$tag" -j DROP
  done
  local chain; chain="$(input_chain "$name")"
  if ! iptables -w -n -L "$chain" >/dev/null 2>&1; then
    iptables -w -N "$chain"
    iptables -w -A "$chain" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
    iptables -w -A "$chain" -p tcp -m multiport --dports "$(forwarded_ports),$REGISTRY_PORT" -j RETURN
    iptables -w -A "$chain" -j DROP
  fi
  iptables -w -C INPUT -i "$link" -m comment --comment "$tag" -j "$chain" 2>/dev/null ||
    iptables -w -I INPUT -i "$link" -m comment --comment "$tag" -j "$chain"
  setup_host_port_nat "$name"
}

# The host's 127.0.0.1:TESTBED_HOST_PORTS as 127.0.0.1 in the node's own namespace (see the
# top). Idempotent; the node side goes with the namespace, the host side with `down`
# (remove_host_rules; route_localnet with the link).
setup_host_port_nat() {
  local name="$1" link tag chain host node ports
  link="$(host_link "$name")"; tag="govcloud-testbed-$(state_tag)"; chain="$(input_chain "$name")"
  host="$(host_addr "$name")"; node="$(node_addr "$name")"; ports="$TESTBED_HOST_PORTS"
  [[ "$ports" =~ ^[0-9]+:[0-9]+$ ]] || die "TESTBED_HOST_PORTS must be FIRST:LAST (got '$ports')"
  # Node side: 127.0.0.1:P -> host side of the veth, from the node's address.
  in_node "$name" sysctl -qw "net.ipv4.conf.eth0.route_localnet=1"
  local rule=(-d 127.0.0.1/32 -p tcp -m tcp --dport "$ports" -m comment --comment "$tag" -j DNAT --to-destination "$host")
  in_node "$name" iptables -w -t nat -C OUTPUT "${rule[@]}" 2>/dev/null ||
    in_node "$name" iptables -w -t nat -A OUTPUT "${rule[@]}"
  rule=(-s 127.0.0.1/32 -d "$host/32" -o eth0 -p tcp -m tcp --dport "$ports" -m comment --comment "$tag"
    -j SNAT --to-source "$node")
  in_node "$name" iptables -w -t nat -C POSTROUTING "${rule[@]}" 2>/dev/null ||
    in_node "$name" iptables -w -t nat -A POSTROUTING "${rule[@]}"
  # Host side: only the node's own address (never a pod's) to the host address -> 127.0.0.1.
  sysctl -qw "net.ipv4.conf.$link.route_localnet=1"
  rule=(-i "$link" -s "$node/32" -d "$host/32" -p tcp -m tcp --dport "$ports" -m comment --comment "$tag"
    -j DNAT --to-destination 127.0.0.1)
  iptables -w -t nat -C PREROUTING "${rule[@]}" 2>/dev/null || iptables -w -t nat -I PREROUTING "${rule[@]}"
  rule=(-s "$node/32" -d 127.0.0.1/32 -p tcp -m tcp --dport "$ports" -j RETURN)
  iptables -w -C "$chain" "${rule[@]}" 2>/dev/null || iptables -w -I "$chain" 1 "${rule[@]}"
}

# The host's INPUT chain for a node's link.
input_chain() { echo "GC-$(state_tag)-${1^^}"; }

# The API server port of cluster dcK: fixed in its cluster.env once it exists, else the
# default layout (load_ports in hack/testbed.sh).
cluster_api_port() {
  local env; env="$(cluster_dir "dc$1")/cluster.env"
  if [ -f "$env" ]; then sed -n 's/^P_API=//p' "$env"; else echo $((TESTBED_BASE_PORT + 100 * ($1 - 1) + 2)); fi
}

# The API server ports of every cluster (forwarded at each node's host address).
forwarded_ports() {
  local k out=""
  for k in $(seq 1 "$TESTBED_CLUSTERS"); do out+="$(cluster_api_port "$k"),"; done
  echo "${out%,}"
}

# Kubelet sets kernel tunables of the whole machine (kernel.panic, panic_on_oops,
# vm.overcommit_memory, ...; protectKernelDefaults would make it refuse to start instead):
# the values from before the first real node are saved here and put back by `down`.
HOST_SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# `up` saves them once before the clusters start in parallel; the call per node (for
# `start-cluster`) finds the file. The temporary name is per process and the file is never
# overwritten, so two nodes starting at once cannot race (they did: CI of 9c3637a).
save_host_sysctls() {
  local f="$TESTBED_STATE/host-sysctl.saved" k
  [ -f "$f" ] && return 0
  for k in "${HOST_SYSCTLS[@]}"; do printf '%s=%s\n' "$k" "$(sysctl -n "$k")"; done >"$f.$BASHPID"
  mv -n "$f.$BASHPID" "$f"
  rm -f "$f.$BASHPID"
}
restore_host_sysctls() {
  local f="$TESTBED_STATE/host-sysctl.saved" kv
  [ -f "$f" ] || return 0
  while read -r kv; do sysctl -qw "$kv" || true; done <"$f"
  rm -f "$f"
}

write_node_config() {
  local name="$1" dir node pki; dir="$(cluster_dir "$name")"; node="$dir/node"; pki="$dir/pki"
  local server
  server="https://$(host_addr "$name"):$P_API"
  mkdir -p "$node"/{cni,certs.d/registry.gov.cn,containerd,kubelet,pod-logs,ipam}
  write_kubeconfig "$node/kubelet.kubeconfig" "$name" "$server" "$pki" kubelet kubelet
  write_kubeconfig "$node/kube-proxy.kubeconfig" "$name" "$server" "$pki" kube-proxy kube-proxy
  write_kubeconfig "$node/kube-router.kubeconfig" "$name" "$server" "$pki" kube-router kube-router
  cat >"$node/containerd.toml" <<EOF
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$node/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.gov.cn/govcloud/pause:3.10"
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails in runc.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$node/certs.d"
EOF
  # registry.gov.cn is the local registry (hack/registry.sh), reached through the forward.
  cat >"$node/certs.d/registry.gov.cn/hosts.toml" <<EOF
server = "http://$(host_addr "$name"):$REGISTRY_PORT"
[host."http://$(host_addr "$name"):$REGISTRY_PORT"]
  capabilities = ["pull", "resolve"]
EOF
  cat >"$node/cni/10-govcloud.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "govcloud-$name",
  "plugins": [
    {
      "type": "bridge", "bridge": "gcbr0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$node/ipam",
        "ranges": [[{"subnet": "$(pod_cidr "$name")", "gateway": "$(pod_gateway "$name")"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # No cluster DNS yet: pods resolve nothing (no route off the node either).
  printf 'search cluster.local\noptions ndots:1\n' >"$node/resolv.conf"
  cat >"$node/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(node_addr "$name")
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
cgroupDriver: cgroupfs
cgroupRoot: $(cgroup_root "$name")
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$node/containerd.sock
enforceNodeAllocatable: []
podLogsDir: $node/pod-logs
resolvConf: $node/resolv.conf
registerWithTaints:
- {key: $REAL_NODE_LABEL, value: real, effect: NoSchedule}
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
EOF
  cat >"$node/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $node/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $(pod_cidr "$name")
hostnameOverride: $(real_node_name "$name")
bindAddress: $(node_addr "$name")
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$(node_addr "$name")/32"]
conntrack: {maxPerCore: 0}
EOF
}

make_cgroups() {
  local name="$1" c root; root="$(cgroup_root "$name")"
  for c in /sys/fs/cgroup/*/; do
    [ -d "$c" ] && [ -w "$c" ] || continue
    [ -f "$c/cgroup.procs" ] || continue
    mkdir -p "$c${root#/}" 2>/dev/null || true
  done
}

# kubernetes Service → the API server through the host-side forward (the API server runs
# with --endpoint-reconciler-type=none, so nothing else writes these).
apply_api_endpoints() {
  local name="$1"
  KC_CLUSTER="$name" kc apply -f - >/dev/null <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels:
    kubernetes.io/service-name: kubernetes
    endpointslice.kubernetes.io/managed-by: govcloud-testbed
addressType: IPv4
endpoints:
- addresses: ["$(host_addr "$name")"]
  conditions: {ready: true}
ports:
- {name: https, port: $P_API, protocol: TCP}
EOF
}

real_node_ready() {
  local st
  st="$(KC_CLUSTER="$1" kc get node "$(real_node_name "$1")" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" || return 1
  [ "$st" = True ]
}

ensure_real_node() {
  local name="$1" t0; t0="$(now_ms)"
  local dir node; dir="$(cluster_dir "$name")"; node="$dir/node"
  real_node_prereqs
  gen_node_pki "$name"
  setup_node_network "$name"
  write_node_config "$name"
  make_cgroups "$name"
  local ns; ns="/run/netns/$(node_netns "$name")"
  # Every cluster's API server at this node's host address (own: node-apifwd; the
  # others': node-apifwd-dcK), so that pods here (the operator's) reach the members too.
  local k comp port
  for k in $(seq 1 "$TESTBED_CLUSTERS"); do
    port="$(cluster_api_port "$k")"
    comp="node-apifwd"; [ "dc$k" = "$name" ] || comp="node-apifwd-dc$k"
    if ! component_alive "$name" "$comp"; then
      start_component "$name" "$comp" "" bash -c 'exec -a "$0" socat "$@"' "$node/$comp" \
        "TCP-LISTEN:$port,bind=$(host_addr "$name"),reuseaddr,fork" "TCP:127.0.0.1:$port"
    fi
  done
  if ! component_alive "$name" node-regfwd; then
    start_component "$name" node-regfwd "" bash -c 'exec -a "$0" socat "$@"' "$node/regfwd" \
      "TCP-LISTEN:$REGISTRY_PORT,bind=$(host_addr "$name"),range=$(node_addr "$name")/32,reuseaddr,fork" \
      "TCP:127.0.0.1:$REGISTRY_PORT"
  fi
  if ! component_alive "$name" containerd; then
    start_component "$name" containerd "" nsenter --net="$ns" -- containerd --config "$node/containerd.toml"
  fi
  wait_for "$name" containerd "containerd on $node/containerd.sock" \
    ctr -a "$node/containerd.sock" version
  save_host_sysctls
  if ! component_alive "$name" kubelet; then
    shared_kubelet_root "$node/kubelet"
    start_component "$name" kubelet "" nsenter --net="$ns" -- "$K8S_BIN/kubelet" \
      --config="$node/kubelet.yaml" --kubeconfig="$node/kubelet.kubeconfig" \
      --root-dir="$node/kubelet" --cert-dir="$node/kubelet-pki" \
      --node-ip="$(node_addr "$name")" --hostname-override="$(real_node_name "$name")" \
      --node-labels="$REAL_NODE_LABEL=real,node.kubernetes.io/instance-type=real"
  fi
  if ! component_alive "$name" kube-proxy; then
    start_component "$name" kube-proxy "" nsenter --net="$ns" -- "$K8S_BIN/kube-proxy" \
      --config="$node/kube-proxy.yaml"
  fi
  wait_for "$name" kubelet "node $(real_node_name "$name") registered" \
    env KC_CLUSTER="$name" "$KUBECTL" --kubeconfig "$dir/kubeconfig" get node "$(real_node_name "$name")"
  # kube-router reads the node's pod CIDR; nothing allocates one here (spec.podCIDR can be
  # set once).
  if [ -z "$(KC_CLUSTER="$name" kc get node "$(real_node_name "$name")" -o 'jsonpath={.spec.podCIDR}')" ]; then
    KC_CLUSTER="$name" kc patch node "$(real_node_name "$name")" --type=merge \
      -p "{\"spec\":{\"podCIDR\":\"$(pod_cidr "$name")\",\"podCIDRs\":[\"$(pod_cidr "$name")\"]}}" >/dev/null
  fi
  if ! component_alive "$name" kube-router; then
    start_component "$name" kube-router "" nsenter --net="$ns" -- "$KUBE_ROUTER_BIN/kube-router" \
      --kubeconfig="$node/kube-router.kubeconfig" --hostname-override="$(real_node_name "$name")" \
      --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
      --enable-cni=false --enable-ibgp=false --enable-overlay=false \
      --service-cluster-ip-range="$SERVICE_CIDR" --health-port=20244 --metrics-port=0
  fi
  apply_api_endpoints "$name"
  ensure_local_path "$name"
  wait_for "$name" kubelet "node $(real_node_name "$name") Ready" real_node_ready "$name"
  log "$name: real node $(real_node_name "$name") Ready (pods $(pod_cidr "$name"), node IP $(node_addr "$name"), netns $(node_netns "$name")) ($(since "$t0"))"
}

# Kubelet's root dir as a mount of its own, rshared (see the top). Only while kubelet is not
# running: a bind mount over a live root would hide the volumes mounted under it.
shared_kubelet_root() {
  local root="$1"
  mkdir -p "$root"
  if [ "$(findmnt -n -o TARGET --target "$root")" != "$root" ]; then
    mount --bind "$root" "$root"
  fi
  mount --make-rshared "$root"
}

# Volumes: rancher's local-path provisioner, out of cluster (kubeconfig), provisions
# StorageClass "local-path" (WaitForFirstConsumer) as directories under the node's state
# dir, created and removed by helper pods on the node (registry.gov.cn/govcloud/busybox:1.35).
# They are `local` PersistentVolumes (the StorageClass's defaultVolumeType annotation, read by
# the provisioner; a claim's volumeType annotation overrides it), with the provisioner's node
# affinity: Velero's file-system backup skips hostPath volumes, the provisioner's default.
# Claims of pods on KWOK nodes are not provisioned (there is no path for them): those tests
# bring static PersistentVolumes of their own.
ensure_local_path() {
  local name="$1" dir node; dir="$(cluster_dir "$1")"; node="$dir/node"
  mkdir -p "$node/volumes"
  printf '{"nodePathMap": [{"node": "%s", "paths": ["%s"]}]}\n' "$(real_node_name "$name")" "$node/volumes" \
    >"$node/local-path.json"
  cat >"$node/local-path-helper.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: helper-pod
spec:
  containers:
  - name: helper-pod
    image: registry.gov.cn/govcloud/busybox:1.35
    imagePullPolicy: IfNotPresent
EOF
  KC_CLUSTER="$name" kc apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: local-path-storage}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-path-config, namespace: local-path-storage}
data:
  setup: |-
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "$VOL_DIR"
  teardown: |-
    #!/bin/sh
    set -eu
    rm -rf "$VOL_DIR"
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
  annotations:
    defaultVolumeType: local
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
EOF
  if ! component_alive "$name" local-path; then
    start_component "$name" local-path "" "$LOCAL_PATH_BIN/local-path-provisioner" start \
      --config "$node/local-path.json" --provisioner-name rancher.io/local-path \
      --namespace local-path-storage --configmap-name local-path-config \
      --service-account-name default --helper-image registry.gov.cn/govcloud/busybox:1.35 \
      --helper-pod-file "$node/local-path-helper.yaml" --kubeconfig "$dir/kubeconfig"
  fi
}

# PIDs of processes in the node's cgroups (its containers and their shims).
node_cgroup_pids() {
  local root; root="$(cgroup_root "$1")"
  [ -d "/sys/fs/cgroup/pids${root}" ] || return 0
  find "/sys/fs/cgroup/pids${root}" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u
}

# Processes started by this node's containerd (shims), found by the containerd address
# in their command line (by PID, never by name).
node_shim_pids() {
  local sock="$1" p
  for p in /proc/[0-9]*; do
    { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "-address $sock " && echo "${p#/proc/}"
  done
  return 0
}

stop_real_node() {
  local name="$1" dir node pid; dir="$(cluster_dir "$name")"; node="$dir/node"
  if [ ! -d "$node" ]; then
    # An `up` interrupted before the node's config was written: its network only.
    [ -e "/run/netns/$(node_netns "$name")" ] && ip netns del "$(node_netns "$name")" 2>/dev/null
    ip link del "$(host_link "$name")" 2>/dev/null || true
    return 0
  fi
  stop_cluster_components "$name" local-path kube-router kube-proxy kubelet
  if component_alive "$name" containerd; then
    # The pods' network namespaces (/run/netns/cni-*), removed once containerd is gone.
    local c
    for c in $(ctr -a "$node/containerd.sock" -n k8s.io containers ls -q 2>/dev/null); do
      ctr -a "$node/containerd.sock" -n k8s.io containers info "$c" 2>/dev/null |
        grep -o '"/var/run/netns/cni-[0-9a-f-]*"' || true
    done | tr -d '"' | sort -u >"$node/pod-netns.list"
    local t
    for t in $(ctr -a "$node/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr -a "$node/containerd.sock" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
    done
  fi
  for pid in $(node_cgroup_pids "$name"); do kill -KILL "$pid" 2>/dev/null || true; done
  stop_cluster_components "$name" containerd
  for pid in $(node_shim_pids "$node/containerd.sock"); do kill -KILL "$pid" 2>/dev/null || true; done
  local fwd=() pf
  for pf in "$dir"/pids/node-apifwd*.pid; do [ -e "$pf" ] && fwd+=("$(basename "$pf" .pid)"); done
  stop_cluster_components "$name" "${fwd[@]}" node-regfwd
  # Mounts left by kubelet (volumes) and containerd (rootfs, shm), deepest first.
  local m
  awk -v p="$node/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  local c root; root="$(cgroup_root "$name")"
  for c in /sys/fs/cgroup/*/; do
    [ -d "$c${root#/}" ] || continue
    find "$c${root#/}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  local p
  # Also those of a containerd that was killed (its tasks' OCI specs name them).
  grep -ho '/var/run/netns/cni-[0-9a-f-]*' \
    "$node"/containerd/state/io.containerd.runtime.v2.task/k8s.io/*/config.json 2>/dev/null >>"$node/pod-netns.list" || true
  if [ -f "$node/pod-netns.list" ]; then
    while read -r p; do
      [ -n "$p" ] && ip netns del "$(basename "$p")" 2>/dev/null || true
    done <"$node/pod-netns.list"
  fi
  local ns; ns="$(node_netns "$name")"
  [ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null || true
  ip link del "$(host_link "$name")" 2>/dev/null || true
}

# The host's iptables rules of the real nodes (commented with the state dir's tag).
remove_host_rules() {
  local tag rule
  tag="govcloud-testbed-$(state_tag)"
  iptables -w -S INPUT 2>/dev/null | grep -F -- "--comment $tag" | while read -r rule; do
    # shellcheck disable=SC2086 # the saved rule is split into its words on purpose
    iptables -w ${rule/-A /-D } || true
  done
  iptables -w -S FORWARD 2>/dev/null | grep -F -- "--comment $tag" | while read -r rule; do
    # shellcheck disable=SC2086
    iptables -w ${rule/-A /-D } || true
  done
  iptables -w -t nat -S PREROUTING 2>/dev/null | grep -F -- "--comment $tag" | while read -r rule; do
    # shellcheck disable=SC2086
    iptables -w -t nat ${rule/-A /-D } || true
  done
  local chain
  iptables -w -S 2>/dev/null | sed -n "s/^-N \(GC-$(state_tag)-DC[0-9]*\)$/\1/p" | while read -r chain; do
    iptables -w -F "$chain" && iptables -w -X "$chain" || true
  done
  # The rule of earlier versions of this script.
  while iptables -w -C FORWARD -s 10.88.0.0/16 -m comment --comment govcloud-testbed -j DROP 2>/dev/null; do
    iptables -w -D FORWARD -s 10.88.0.0/16 -m comment --comment govcloud-testbed -j DROP
  done
  restore_host_sysctls
}

real_node_status() {
  local name="$1" dir st="" c; dir="$(cluster_dir "$name")"
  [ -d "$dir/node" ] || return 0
  for c in "${REAL_COMPONENTS[@]}"; do
    if component_alive "$name" "$c"; then st+=" $c=$(cat "$dir/pids/$c.pid")"; else st+=" $c=down"; fi
  done
  local ready=no
  real_node_ready "$name" 2>/dev/null && ready=yes
  printf '     real node: %s Ready=%s netns=%s node IP=%s pods=%s\n' "$(real_node_name "$name")" "$ready" \
    "$(node_netns "$name")" "$(node_addr "$name")" "$(pod_cidr "$name")"
  printf '     real node pids: %s\n' "${st# }"
}

# pin-namespace dcN NS: every pod of NS runs on the real node.
cmd_pin_namespace() {
  local name="${1:-}" nsname="${2:-}"; validate_name "$name"
  [ -n "$nsname" ] || die "usage: hack/testbed.sh pin-namespace dcN NAMESPACE"
  load_ports "$name"
  KC_CLUSTER="$name" kc annotate --overwrite namespace "$nsname" \
    "scheduler.alpha.kubernetes.io/node-selector=$REAL_NODE_LABEL=real" \
    "scheduler.alpha.kubernetes.io/defaultTolerations=[{\"key\":\"$REAL_NODE_LABEL\",\"operator\":\"Equal\",\"value\":\"real\",\"effect\":\"NoSchedule\"}]"
}
