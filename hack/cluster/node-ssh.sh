#!/usr/bin/env bash
# SSH access to the local cluster's node, as the Kubernetes storage e2e
# suite's [Disruptive] specs expect of a node: `ssh <node IP>:22` runs shell
# commands (mount | grep ...) and `systemctl stop|start|show kubelet`. This
# machine has no systemd and no sshd running, so this script provides both for
# the kubelet hack/cluster/up.sh started: a private sshd (own host key, one
# authorized key, bound to the node IP only) whose every session runs with a
# `systemctl` that stops and relaunches that kubelet with the same command line.
#
# Usage: hack/cluster/node-ssh.sh up     (prints the private key path for KUBE_SSH_KEY_PATH)
#        hack/cluster/node-ssh.sh down
# Internal: "session" (sshd's ForceCommand) and, invoked as systemctl, the shim.
set -euo pipefail
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

SSH_DIR="${CLUSTER_DIR}/node-ssh"

systemctl_shim() {
	local verb="${1:-}" unit="${2:-}"
	[[ "${unit}" == kubelet ]] || { echo "systemctl (csi-hub node shim): only the kubelet unit exists here, not '${unit}'" >&2; exit 5; }
	case "${verb}" in
	show)
		if running kubelet; then echo active; else echo inactive; fi ;;
	is-active)
		if running kubelet; then echo active; else echo inactive; exit 3; fi ;;
	stop)
		if running kubelet; then
			# Kept for start: the kubelet's exact command line.
			cp "/proc/$(cat "$(pid_file kubelet)")/cmdline" "${SSH_DIR}/kubelet.cmdline"
			stop_component kubelet
		fi ;;
	start)
		running kubelet && exit 0
		[[ -f "${SSH_DIR}/kubelet.cmdline" ]] || { echo "systemctl: no saved kubelet command line (it was not stopped through this shim)" >&2; exit 1; }
		local -a cmd
		mapfile -d '' -t cmd <"${SSH_DIR}/kubelet.cmdline"
		detached "${cmd[@]}" >>"${CLUSTER_LOGS}/kubelet.log" 2>&1 </dev/null
		echo $! >"$(pid_file kubelet)"
		log "kubelet started again (pid $!)" ;;
	restart)
		systemctl_shim stop kubelet
		systemctl_shim start kubelet ;;
	*)
		echo "systemctl (csi-hub node shim): unsupported '${verb}'" >&2
		exit 1 ;;
	esac
}

if [[ "$(basename "$0")" == systemctl ]]; then
	systemctl_shim "$@"
	exit 0
fi

case "${1:-}" in
up)
	[[ "$(id -u)" -eq 0 ]] || die "must run as root"
	command -v sshd >/dev/null || [[ -x /usr/sbin/sshd ]] || die "sshd missing: hack/install-deps.sh installs openssh-server"
	"$0" down
	mkdir -p "${SSH_DIR}/bin" /run/sshd
	chmod 700 "${SSH_DIR}"
	ssh-keygen -q -t ed25519 -N '' -f "${SSH_DIR}/host_key" </dev/null
	ssh-keygen -q -t ed25519 -N '' -f "${SSH_DIR}/client_key" </dev/null
	cp "${SSH_DIR}/client_key.pub" "${SSH_DIR}/authorized_keys"
	ln -sf "$(readlink -f "$0")" "${SSH_DIR}/bin/systemctl"
	cat >"${SSH_DIR}/sshd_config" <<CFG
ListenAddress $(host_ip):22
HostKey ${SSH_DIR}/host_key
AuthorizedKeysFile ${SSH_DIR}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile ${SSH_DIR}/sshd.pid
ForceCommand env CSI_HUB_CLUSTER_DIR=${CLUSTER_DIR} CSI_HUB_CLUSTER_LOGS=${CLUSTER_LOGS} $(readlink -f "$0") session
CFG
	/usr/sbin/sshd -f "${SSH_DIR}/sshd_config" -E "${CLUSTER_LOGS}/node-sshd.log"
	log "node sshd on $(host_ip):22 (log ${CLUSTER_LOGS}/node-sshd.log)"
	echo "${SSH_DIR}/client_key"
	;;
down)
	if [[ -f "${SSH_DIR}/sshd.pid" ]]; then
		kill "$(cat "${SSH_DIR}/sshd.pid")" 2>/dev/null || true
	fi
	rm -rf "${SSH_DIR}"
	;;
session)
	# sshd's ForceCommand: the client's command, with the systemctl shim first on PATH.
	export PATH="${SSH_DIR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	exec bash --norc --noprofile -c "${SSH_ORIGINAL_COMMAND:-true}"
	;;
*)
	die "usage: $0 up|down"
	;;
esac
