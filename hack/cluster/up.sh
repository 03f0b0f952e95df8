#!/usr/bin/env bash
# Brings up a real single-node Kubernetes cluster on this machine without Docker:
# etcd, kube-apiserver (--allow-privileged), kube-controller-manager,
# kube-scheduler, snapshot-controller (+ CRDs), containerd and kubelet; builds
# csi-hub's images without a container engine, imports them into containerd and
# applies manifests/ with only the image names overridden (kustomize).
#
# Idempotent: when the cluster is already up it only rebuilds/reloads the images
# and re-applies the manifests. Tear down with hack/cluster/down.sh.
#
# Usage: hack/cluster/up.sh [--no-deploy]
# Then:  export KUBECONFIG=/var/lib/csi-hub-cluster/admin.kubeconfig
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/pki.sh"

# make unit (CSI_HUB_UNIT=1) starts no cluster: record the attempt and refuse.
if [[ "${CSI_HUB_UNIT:-}" == 1 ]]; then
	[[ -n "${CSI_HUB_UNIT_SPAWN_LOG:-}" ]] && echo "CSI_HUB_UNIT: hack/cluster/up.sh was run (pid $$)" >>"${CSI_HUB_UNIT_SPAWN_LOG}"
	die "CSI_HUB_UNIT=1 (make unit): refusing to bring up the local cluster"
fi
deploy=true
[[ "${1:-}" == "--no-deploy" ]] && deploy=false
[[ "$(id -u)" -eq 0 ]] || die "must run as root (kubelet, containerd, mounts and loop devices)"
start_time=${SECONDS}

"${REPO_ROOT}/hack/install-deps.sh" >&2
BIN_DIR="$("${REPO_ROOT}/hack/ensure-k8s.sh")"
SNAP_DIR="$("${REPO_ROOT}/hack/ensure-snapshot-controller.sh")"
KUBECTL="${BIN_DIR}/kubectl"
kc() { "${KUBECTL}" --kubeconfig "${KUBECONFIG_ADMIN}" "$@"; }
HOST_IP="$(host_ip)"

# launch <name> <binary> <args...>: starts a component detached from this
# shell (own session, no inherited descriptors, output to its log) and records its pid.
launch() {
	local name="$1"
	shift
	mkdir -p "${CLUSTER_DIR}/pids" "${CLUSTER_LOGS}"
	detached "$@" >>"${CLUSTER_LOGS}/${name}.log" 2>&1 </dev/null
	echo $! >"$(pid_file "${name}")"
	log "started ${name} (pid $!, log ${CLUSTER_LOGS}/${name}.log)"
}

# wait_until <seconds> <what> <command...>: polls the command until it succeeds.
wait_until() {
	local timeout="$1" what="$2" deadline=$((SECONDS + $1))
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "timed out after ${timeout}s waiting for ${what}"
			return 1
		fi
		sleep 0.5
	done
}

# component_log_tail <name>: shows why a component did not come up.
fail_with_log() {
	log "last lines of ${CLUSTER_LOGS}/$1.log:"
	tail -n 30 "${CLUSTER_LOGS}/$1.log" >&2 || true
	die "$1 did not become ready"
}

cluster_running() {
	local c
	for c in etcd kube-apiserver kube-controller-manager kube-scheduler groupconversion snapshot-controller containerd kubelet; do
		running "${c}" || return 1
	done
	kc get --raw /readyz >/dev/null 2>&1
}

start_control_plane() {
	mkdir -p "${CLUSTER_DIR}" "${CLUSTER_LOGS}"
	rm -f "${CLUSTER_LOGS}"/*.log
	make_pki "${HOST_IP}"
	local pki="${CLUSTER_DIR}/pki"

	launch etcd "$(command -v etcd)" --name=default --data-dir="${CLUSTER_DIR}/etcd" \
		--listen-client-urls="http://127.0.0.1:${ETCD_CLIENT_PORT}" --advertise-client-urls="http://127.0.0.1:${ETCD_CLIENT_PORT}" \
		--listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
		--initial-cluster="default=http://127.0.0.1:${ETCD_PEER_PORT}" --log-level=warn
	wait_until 30 etcd curl -sf "http://127.0.0.1:${ETCD_CLIENT_PORT}/health" || fail_with_log etcd

	# Bound to every address: pods reach it through the kubernetes Service
	# (10.0.0.1:443, DNAT below) at the advertised host address.
	launch kube-apiserver "${BIN_DIR}/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:${ETCD_CLIENT_PORT}" --bind-address=0.0.0.0 --advertise-address="${HOST_IP}" \
		--secure-port="${APISERVER_PORT}" --cert-dir="${CLUSTER_DIR}/apiserver" \
		--tls-cert-file="${pki}/apiserver.crt" --tls-private-key-file="${pki}/apiserver.key" --client-ca-file="${pki}/ca.crt" \
		--service-account-issuer=https://kubernetes.default.svc --service-account-key-file="${pki}/sa.pub" \
		--service-account-signing-key-file="${pki}/sa.key" --authorization-mode=Node,RBAC \
		--service-cluster-ip-range="${SERVICE_CIDR}" --allow-privileged=true \
		--kubelet-client-certificate="${pki}/admin.crt" --kubelet-client-key="${pki}/admin.key" \
		--kubelet-preferred-address-types=InternalIP --profiling=false
	wait_until 90 kube-apiserver kc get --raw /readyz || fail_with_log kube-apiserver

	launch kube-controller-manager "${BIN_DIR}/kube-controller-manager" \
		--kubeconfig="${KUBECONFIG_ADMIN}" --authentication-kubeconfig="${KUBECONFIG_ADMIN}" \
		--authorization-kubeconfig="${KUBECONFIG_ADMIN}" --bind-address=127.0.0.1 --secure-port=10257 \
		--cert-dir="${CLUSTER_DIR}/kube-controller-manager" --leader-elect=false --controllers='*' \
		--service-account-private-key-file="${pki}/sa.key" --root-ca-file="${pki}/ca.crt" \
		--service-cluster-ip-range="${SERVICE_CIDR}" --use-service-account-credentials=true
	launch kube-scheduler "${BIN_DIR}/kube-scheduler" \
		--kubeconfig="${KUBECONFIG_ADMIN}" --authentication-kubeconfig="${KUBECONFIG_ADMIN}" \
		--authorization-kubeconfig="${KUBECONFIG_ADMIN}" --bind-address=127.0.0.1 --secure-port=10259 \
		--cert-dir="${CLUSTER_DIR}/kube-scheduler" --leader-elect=false

	# Snapshot CRDs first (the group snapshot ones too: snapshot-controller
	# v8.7 turns group snapshots off for its run when they are not served yet),
	# then the one-per-cluster snapshot-controller.
	kc apply --server-side -f "$(ls -d "${SNAP_DIR}"/crd-client-*)" >/dev/null
	# Retried: right after the apply a CRD can have a status without conditions,
	# and kubectl wait then fails at once (".status.conditions accessor error")
	# instead of waiting.
	wait_until 60 "snapshot CRDs Established" kc wait --for=condition=Established --timeout=5s \
		crd/volumesnapshots.snapshot.storage.k8s.io \
		crd/volumesnapshotcontents.snapshot.storage.k8s.io crd/volumesnapshotclasses.snapshot.storage.k8s.io \
		crd/volumegroupsnapshots.groupsnapshot.storage.k8s.io crd/volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io \
		crd/volumegroupsnapshotclasses.groupsnapshot.storage.k8s.io || fail_with_log kube-apiserver
	start_group_conversion
	launch snapshot-controller "${SNAP_DIR}/bin/snapshot-controller" --kubeconfig="${KUBECONFIG_ADMIN}" \
		--leader-election=false --retry-interval-max=10s
	# kube-controller-manager creates the default ServiceAccount, which every pod needs.
	wait_until 60 "default ServiceAccount" kc -n default get serviceaccount default || fail_with_log kube-controller-manager
}

# start_group_conversion: the CRD conversion webhook of VolumeGroupSnapshotContent
# (hack/cluster/groupconversion; its doc says why: without it the v1beta1 view,
# which Kubernetes' v1.34 group snapshot e2e spec reads, lists no members).
# Host process on 127.0.0.1, serving certificate from the cluster CA.
start_group_conversion() {
	local pki="${CLUSTER_DIR}/pki" bin="${CLUSTER_DIR}/groupconversion"
	local url="https://127.0.0.1:${GROUP_CONVERSION_PORT}"
	sign_cert groupconversion "/CN=groupconversion" "IP:127.0.0.1"
	(cd "${REPO_ROOT}" && CGO_ENABLED=0 go build -o "${bin}" ./hack/cluster/groupconversion)
	launch groupconversion "${bin}" --listen="127.0.0.1:${GROUP_CONVERSION_PORT}" \
		--tls-cert-file="${pki}/groupconversion.crt" --tls-private-key-file="${pki}/groupconversion.key"
	wait_until 30 groupconversion curl -sf --cacert "${pki}/ca.crt" "${url}/healthz" || fail_with_log groupconversion
	kc patch crd volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io --type=merge -p \
		"{\"spec\":{\"conversion\":{\"strategy\":\"Webhook\",\"webhook\":{\"conversionReviewVersions\":[\"v1\"],\"clientConfig\":{\"url\":\"${url}/convert\",\"caBundle\":\"$(base64 -w0 "${pki}/ca.crt")\"}}}}}" >/dev/null
}

# Without kube-proxy, this one rule is the kubernetes Service: in-cluster
# clients (csi-hub) dial 10.0.0.1:443 and land on the API server.
install_service_dnat() {
	iptables -t nat -N "${IPTABLES_CHAIN}" 2>/dev/null || iptables -t nat -F "${IPTABLES_CHAIN}"
	iptables -t nat -A "${IPTABLES_CHAIN}" -d "${KUBERNETES_SVC_IP}/32" -p tcp --dport 443 \
		-j DNAT --to-destination "${HOST_IP}:${APISERVER_PORT}"
	iptables -t nat -C PREROUTING -j "${IPTABLES_CHAIN}" 2>/dev/null || iptables -t nat -I PREROUTING -j "${IPTABLES_CHAIN}"
	iptables -t nat -C OUTPUT -j "${IPTABLES_CHAIN}" 2>/dev/null || iptables -t nat -I OUTPUT -j "${IPTABLES_CHAIN}"
}

start_containerd() {
	local cfg="${CLUSTER_DIR}/containerd.toml" cni="${CLUSTER_DIR}/cni"
	mkdir -p "${cni}" "${CLUSTER_RUN}"
	cat >"${cni}/10-${CNI_NETWORK}.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "${CNI_NETWORK}",
  "plugins": [
    {"type": "bridge", "bridge": "${CNI_BRIDGE}", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "dataDir": "${CLUSTER_DIR}/cni-ipam",
              "ranges": [[{"subnet": "${POD_CIDR}"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
	cat /proc/sys/net/ipv4/ip_forward >"${CLUSTER_DIR}/ip_forward.orig"
	# restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and runc fails
	# every sandbox when it tries to lower an OOM score.
	containerd config default | sed \
		-e "s#^root = .*#root = \"${CLUSTER_DIR}/containerd\"#" \
		-e "s#^state = .*#state = \"${CLUSTER_RUN}/containerd\"#" \
		-e "s#^  address = \"/run/containerd/containerd.sock\"#  address = \"${CONTAINERD_SOCK}\"#" \
		-e "s#sandbox_image = .*#sandbox_image = \"${IMAGE_REGISTRY}/pause:${IMAGE_TAG}\"#" \
		-e "s#restrict_oom_score_adj = false#restrict_oom_score_adj = true#" \
		-e "s#bin_dir = \"/opt/cni/bin\"#bin_dir = \"/usr/lib/cni\"#" \
		-e "s#conf_dir = \"/etc/cni/net.d\"#conf_dir = \"${cni}\"#" \
		-e "s#path = \"/opt/containerd\"#path = \"${CLUSTER_DIR}/containerd-opt\"#" \
		>"${cfg}"
	grep -q "${CONTAINERD_SOCK}" "${cfg}" || die "could not set the containerd socket in ${cfg}"
	launch containerd "$(command -v containerd)" --config "${cfg}"
	wait_until 30 containerd ctr --address "${CONTAINERD_SOCK}" version || fail_with_log containerd
}

load_images() {
	local out="${CLUSTER_DIR}/images" line ref file
	log "building images (no Docker: hack/imagebuild)"
	mkdir -p "${out}"
	(cd "${REPO_ROOT}" && go run ./hack/imagebuild -out "${out}" -registry "${IMAGE_REGISTRY}" -tag "${IMAGE_TAG}") >"${out}/refs"
	while IFS=$'\t' read -r ref file; do
		ctr --address "${CONTAINERD_SOCK}" -n k8s.io images import --no-unpack=false "${file}" >/dev/null
		log "imported ${ref}"
	done <"${out}/refs"
}

start_kubelet() {
	local cfg="${CLUSTER_DIR}/kubelet.yaml"
	cat >"${cfg}" <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${HOST_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: ${CLUSTER_DIR}/pki/ca.crt}
# Only CA-signed clients (the API server) get past authentication.
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
imageServiceEndpoint: unix://${CONTAINERD_SOCK}
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# A shared development machine: do not evict or garbage-collect images because
# the disk is fuller than a dedicated node's would be.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
KCFG
	launch kubelet "${BIN_DIR}/kubelet" --config="${cfg}" --kubeconfig="${CLUSTER_DIR}/kubelet.kubeconfig" \
		--hostname-override="${NODE_NAME}" --node-ip="${HOST_IP}" --cert-dir="${CLUSTER_DIR}/kubelet-pki" \
		--root-dir="${KUBELET_DIR}" --v=2
	wait_until 90 "node ${NODE_NAME} Ready" kc wait --for=condition=Ready --timeout=2s "node/${NODE_NAME}" || fail_with_log kubelet
}

deploy_manifests() {
	local overlay="${CLUSTER_DIR}/deploy"
	mkdir -p "${overlay}"
	cat >"${overlay}/kustomization.yaml" <<KUST
# Generated by hack/cluster/up.sh: manifests/ unchanged except the image names.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="${overlay}" "${REPO_ROOT}/manifests")
images:
- name: ghcr.io/csi-hub/csi-hub
  newName: ${IMAGE_REGISTRY}/csi-hub
  newTag: ${IMAGE_TAG}
- name: ghcr.io/csi-hub/csi-hub-plugin
  newName: ${IMAGE_REGISTRY}/csi-hub-plugin
  newTag: ${IMAGE_TAG}
KUST
	kc apply -k "${overlay}" >&2
	# New images under the same tag: restart so the pods run what was just built.
	kc -n csi-hub rollout restart deployment/csi-hub-controller daemonset/csi-hub-node >/dev/null
	kc -n csi-hub rollout status --timeout=180s deployment/csi-hub-controller >&2 || { kc -n csi-hub get pods -o wide >&2; die "controller Deployment not ready"; }
	kc -n csi-hub rollout status --timeout=180s daemonset/csi-hub-node >&2 || { kc -n csi-hub get pods -o wide >&2; die "node DaemonSet not ready"; }
	wait_until 60 "CSINode ${NODE_NAME} lists block.csi-hub.io" \
		bash -c "'${KUBECTL}' --kubeconfig '${KUBECONFIG_ADMIN}' get csinode '${NODE_NAME}' -o jsonpath='{.spec.drivers[*].name}' | grep -q block.csi-hub.io" ||
		die "the kubelet did not register the driver (see: kubectl -n csi-hub logs ds/csi-hub-node --all-containers)"
}

if cluster_running; then
	log "cluster already up; reloading images and manifests"
else
	"$(dirname "${BASH_SOURCE[0]}")/down.sh" --quiet
	log "starting a single-node cluster (node ${NODE_NAME}, API server https://${HOST_IP}:${APISERVER_PORT})"
	start_control_plane
	install_service_dnat
	start_containerd
fi
load_images
running kubelet || start_kubelet
$deploy && deploy_manifests
log "cluster ready in $((SECONDS - start_time))s"
echo "export KUBECONFIG=${KUBECONFIG_ADMIN}"
echo "kubectl: ${KUBECTL}"
