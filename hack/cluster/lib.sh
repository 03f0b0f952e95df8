# Shared settings and helpers of hack/cluster/{up,down}.sh. Source, do not execute.
#
# Everything the local cluster creates lives under these paths, so that
# down.sh can remove exactly that and nothing else.

CLUSTER_DIR="${CSI_HUB_CLUSTER_DIR:-/var/lib/csi-hub-cluster}"   # PKI, kubeconfigs, etcd, containerd root, pids
CLUSTER_RUN="${CSI_HUB_CLUSTER_RUN:-/run/csi-hub-cluster}"       # containerd state and socket
CLUSTER_LOGS="${CSI_HUB_CLUSTER_LOGS:-/tmp/csi-hub-cluster-logs}" # component logs, kept after down.sh for post-mortems
NODE_NAME="${CSI_HUB_NODE_NAME:-csi-hub-node}"
IMAGE_TAG="${CSI_HUB_IMAGE_TAG:-dev}"
IMAGE_REGISTRY="csi-hub.local"
APISERVER_PORT=6443
ETCD_CLIENT_PORT=12379
ETCD_PEER_PORT=12380
GROUP_CONVERSION_PORT=12443 # hack/cluster/groupconversion (VolumeGroupSnapshotContent conversion webhook)
SERVICE_CIDR=10.0.0.0/24
KUBERNETES_SVC_IP=10.0.0.1
POD_CIDR=10.244.0.0/24
CNI_NETWORK=csi-hub
CNI_BRIDGE=csihub0
IPTABLES_CHAIN=CSI-HUB-SVC
KUBELET_DIR=/var/lib/kubelet
# The driver's host directories (hostPath volumes in manifests/).
DRIVER_DIRS=(/var/lib/csi-hub/pool /var/lib/csi-hub/node)
CONTAINERD_SOCK="${CLUSTER_RUN}/containerd/containerd.sock"
KUBECONFIG_ADMIN="${CLUSTER_DIR}/admin.kubeconfig"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

log() { echo "[cluster] $*" >&2; }
die() { echo "[cluster] ERROR: $*" >&2; exit 1; }

# detached <command...>: starts command in the background in its own session
# with no descriptor above 2 ($! is its pid; stdin/out/err are the caller's
# redirections). A component must not inherit a lock its caller holds, as in
# `flock <lock> make cluster-up`: it would hold that lock for as long as it runs.
detached() {
	setsid bash -c 'for fd in /proc/self/fd/*; do fd=${fd##*/}; if ((fd > 2)) && [[ -e /proc/self/fd/${fd} ]]; then eval "exec ${fd}>&-"; fi; done; exec "$@"' detached "$@" &
}

# host_ip prints the address pods and the kubelet use to reach the API server
# (a loopback address is not reachable from a pod's network namespace).
host_ip() {
	local ip
	ip="$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)"
	[[ -n "${ip}" ]] || ip="$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1)"
	[[ -n "${ip}" ]] || die "no global IPv4 address on this machine"
	echo "${ip}"
}

pid_file() { echo "${CLUSTER_DIR}/pids/$1.pid"; }

# running <name>: the component started by up.sh is alive.
running() {
	local f pid
	f="$(pid_file "$1")"
	[[ -f "${f}" ]] || return 1
	pid="$(cat "${f}")"
	[[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null
}

# stop_component <name> [grace seconds]: SIGTERM, then SIGKILL after the grace period.
stop_component() {
	local name="$1" grace="${2:-20}" f pid i
	f="$(pid_file "${name}")"
	[[ -f "${f}" ]] || return 0
	pid="$(cat "${f}")"
	if [[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null; then
		log "stopping ${name} (pid ${pid})"
		kill -TERM "${pid}" 2>/dev/null || true
		for ((i = 0; i < grace * 10; i++)); do
			kill -0 "${pid}" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "${pid}" 2>/dev/null; then
			log "${name} did not stop in ${grace}s; killing it"
			kill -KILL "${pid}" 2>/dev/null || true
			sleep 0.2
		fi
	fi
	rm -f "${f}"
}

kubectl_bin() { echo "$("${REPO_ROOT}/hack/ensure-k8s.sh" --bin-dir)/kubectl"; }
