#!/usr/bin/env bash
# Tears down the cluster of hack/cluster/up.sh and leaves the machine clean: no
# processes, no mounts under /var/lib/kubelet or the cluster's directories, no
# loop devices over the driver's pool, no containerd/kubelet/CNI/iptables state.
# First asks Kubernetes to delete workloads and volumes (so the driver really
# unpublishes, unstages and deletes them), then stops everything and removes
# what is left. Safe to run when nothing is up.
#
# Usage: hack/cluster/down.sh [--quiet]
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

quiet=false
[[ "${1:-}" == "--quiet" ]] && quiet=true
[[ "$(id -u)" -eq 0 ]] || die "must run as root"
say() { $quiet || log "$@"; }

KUBECTL="$(kubectl_bin 2>/dev/null)"
kc() { timeout 90 "${KUBECTL}" --kubeconfig "${KUBECONFIG_ADMIN}" --request-timeout=20s "$@"; }

# Graceful part: only while the API server and kubelet still run.
delete_workloads() {
	running kube-apiserver && running kubelet && [[ -x "${KUBECTL}" ]] || return 0
	kc get --raw /readyz >/dev/null 2>&1 || return 0
	say "deleting workloads and volumes through Kubernetes"
	local ns
	for ns in $(kc get ns -o jsonpath='{.items[*].metadata.name}'); do
		case "${ns}" in kube-system | kube-public | kube-node-lease | csi-hub) continue ;; esac
		kc -n "${ns}" delete statefulsets,deployments,daemonsets,jobs,pods --all --wait=false >/dev/null 2>&1
		# Teardown: no 30s grace for workloads that ignore SIGTERM.
		kc -n "${ns}" delete pods --all --grace-period=1 --wait=true --timeout=60s >/dev/null 2>&1
		kc -n "${ns}" delete volumesnapshots --all --wait=true --timeout=60s >/dev/null 2>&1
		kc -n "${ns}" delete pvc --all --wait=true --timeout=60s >/dev/null 2>&1
		[[ "${ns}" == default ]] || kc delete ns "${ns}" --wait=false >/dev/null 2>&1
	done
	# The driver still runs: wait for it to delete the backing volumes.
	local deadline=$((SECONDS + 60))
	while ((SECONDS < deadline)); do
		[[ -z "$(kc get pv -o name 2>/dev/null)" ]] && break
		sleep 1
	done
	[[ -z "$(kc get pv -o name 2>/dev/null)" ]] || log "WARNING: PersistentVolumes remain: $(kc get pv -o name | tr '\n' ' ')"
	# Then the driver itself, so its pods end cleanly.
	kc delete ns csi-hub --wait=true --timeout=60s >/dev/null 2>&1
}

# kill_kube_pods: kills what still runs in the kubelet's pod cgroups.
kill_kube_pods() {
	local procs
	procs="$(cat /sys/fs/cgroup/pids/kubepods/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/cgroup.procs \
		/sys/fs/cgroup/pids/kubepods/*/*/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/*/*/cgroup.procs 2>/dev/null | sort -u)"
	[[ -n "${procs}" ]] || return 0
	say "killing leftover container processes: $(echo ${procs})"
	kill -KILL ${procs} 2>/dev/null
	sleep 0.5
}

# shims_of_ours: containerd shims started by our containerd (their command line names our socket).
shims_of_ours() {
	local d
	for d in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"${d}/cmdline" | grep -q -- "containerd-shim.*${CONTAINERD_SOCK}" && echo "${d#/proc/}"
	done
}

stop_runtime() {
	stop_component kubelet 30
	if running containerd; then
		local t
		for t in $(ctr --address "${CONTAINERD_SOCK}" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr --address "${CONTAINERD_SOCK}" -n k8s.io tasks kill -s SIGKILL "${t}" >/dev/null 2>&1
		done
	fi
	kill_kube_pods
	stop_component containerd 15
	local shims
	shims="$(shims_of_ours)"
	if [[ -n "${shims}" ]]; then
		say "stopping containerd shims: $(echo ${shims})"
		kill -KILL ${shims} 2>/dev/null
	fi
	kill_kube_pods
}

unmount_under() {
	local root="$1" m
	# Deepest first, so nested mounts go before their parents.
	for m in $(findmnt -rn -o TARGET | grep -E "^${root}(/|$)" | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-); do
		umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || log "WARNING: cannot unmount ${m}"
	done
}

detach_pool_loops() {
	local dir dev file
	for dir in "${DRIVER_DIRS[@]}"; do
		while read -r dev file; do
			[[ "${file}" == "${dir}"/* ]] || continue
			say "detaching ${dev} (${file})"
			losetup -d "${dev}" 2>/dev/null || log "WARNING: cannot detach ${dev}"
		done < <(losetup -n -O NAME,BACK-FILE 2>/dev/null)
	done
}

remove_network() {
	if iptables -t nat -S "${IPTABLES_CHAIN}" >/dev/null 2>&1; then
		iptables -t nat -D PREROUTING -j "${IPTABLES_CHAIN}" 2>/dev/null
		iptables -t nat -D OUTPUT -j "${IPTABLES_CHAIN}" 2>/dev/null
		iptables -t nat -F "${IPTABLES_CHAIN}"
		iptables -t nat -X "${IPTABLES_CHAIN}"
	fi
	# Masquerade rules the bridge plugin left for pods that were not torn down
	# through CNI (they carry the network's name in their comment).
	local rule chain
	while read -r rule; do
		chain="$(sed -n 's/.* -j \(CNI-[0-9a-f]*\).*/\1/p' <<<"${rule}")"
		eval "iptables -t nat ${rule/-A /-D }" 2>/dev/null
		[[ -n "${chain}" ]] && { iptables -t nat -F "${chain}" 2>/dev/null; iptables -t nat -X "${chain}" 2>/dev/null; }
	done < <(iptables -t nat -S POSTROUTING 2>/dev/null | grep -- "-s ${POD_CIDR%.*}\.[0-9]*/32 .*-j CNI-")
	# Chains the kubelet creates (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT);
	# without kube-proxy every KUBE-* chain on this machine is the kubelet's.
	local ipt table c
	for ipt in iptables ip6tables; do
		command -v "${ipt}" >/dev/null || continue
		for table in filter nat mangle; do
			while read -r rule; do
				eval "${ipt} -t ${table} ${rule/-A /-D }" 2>/dev/null
			done < <(${ipt} -t "${table}" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-')
			for c in $(${ipt} -t "${table}" -S 2>/dev/null | sed -n 's/^-N \(KUBE-.*\)/\1/p'); do
				${ipt} -t "${table}" -F "${c}" 2>/dev/null
			done
			for c in $(${ipt} -t "${table}" -S 2>/dev/null | sed -n 's/^-N \(KUBE-.*\)/\1/p'); do
				${ipt} -t "${table}" -X "${c}" 2>/dev/null
			done
		done
	done
	ip link show "${CNI_BRIDGE}" >/dev/null 2>&1 && ip link delete "${CNI_BRIDGE}"
	if [[ -f "${CLUSTER_DIR}/ip_forward.orig" ]]; then
		cat "${CLUSTER_DIR}/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward
	fi
	local ns
	for ns in /run/netns/cni-*; do
		[[ -e "${ns}" ]] || continue
		umount "${ns}" 2>/dev/null
		rm -f "${ns}"
	done
}

remove_cgroups() {
	local h
	for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
		[[ -d "${h}" ]] && find "${h}" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	return 0
}

# remove_dir <dir>: removes it only when nothing is mounted below it, so a
# stuck volume mount never gets its data deleted.
remove_dir() {
	local dir="$1"
	[[ -e "${dir}" ]] || return 0
	unmount_under "${dir}"
	if findmnt -rn -o TARGET | grep -qE "^${dir}(/|$)"; then
		log "WARNING: mounts remain under ${dir}; not removing it:"
		findmnt -rn -o TARGET | grep -E "^${dir}(/|$)" >&2
		return 1
	fi
	rm -rf "${dir}"
}

started=${SECONDS}
delete_workloads
stop_runtime
for c in snapshot-controller groupconversion kube-scheduler kube-controller-manager kube-apiserver etcd; do
	stop_component "${c}" 15
done
unmount_under "${KUBELET_DIR}"
detach_pool_loops
remove_network
remove_cgroups
rc=0
for d in "${KUBELET_DIR}" "${CLUSTER_RUN}" "${CLUSTER_DIR}" "${DRIVER_DIRS[@]}"; do
	remove_dir "${d}" || rc=1
done
rmdir /var/lib/csi-hub 2>/dev/null
say "cluster down in $((SECONDS - started))s (logs kept in ${CLUSTER_LOGS})"
exit ${rc}
