#!/usr/bin/env bash
# The csi-hub story, step by step, on a real single-node cluster:
# PVC -> Pod -> snapshot -> restore -> resize, with every step csi-hub takes
# (why it acted -> CSI call -> Kubernetes write -> Event) printed as it happens
# from its /steps endpoint, next to kubectl's view.
#
# Usage: make demo   (as root; tear down with: make cluster-down)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"

NS=demo
EXAMPLES="${REPO_ROOT}/manifests/examples"
bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
say() { printf '%s\n' "$*" | fold -s -w 100; }
run() { printf '\033[36m$ %s\033[0m\n' "$*"; "$@"; }
pause() { sleep "${DEMO_PAUSE:-2}"; }

bold "== csi-hub demo: Kubernetes storage, one step at a time =="
say "Bringing up a real single-node cluster (etcd, kube-apiserver, kube-controller-manager,"
say "kube-scheduler, snapshot-controller, containerd, kubelet) and deploying manifests/."
say "This takes about a minute; the log is in /tmp/csi-hub-demo-up.log."
"${REPO_ROOT}/hack/cluster/up.sh" >/tmp/csi-hub-demo-up.log 2>&1 || { tail -20 /tmp/csi-hub-demo-up.log; die "cluster-up failed"; }
KUBECTL="$(kubectl_bin)"
export KUBECONFIG="${KUBECONFIG_ADMIN}"
kubectl() { "${KUBECTL}" "$@"; }
# The workloads use the busybox image built locally (no registry here).
apply_example() { sed "s#image: busybox:1.36#image: ${IMAGE_REGISTRY}/busybox:${IMAGE_TAG}#" "${EXAMPLES}/$1" | "${KUBECTL}" -n "${NS}" apply -f -; }
show_example() { printf '\033[2m'; grep -v '^#' "${EXAMPLES}/$1"; printf '\033[0m'; }
wait_or_explain() { # <timeout> <what> <kubectl wait args...>
	local t="$1" what="$2"
	shift 2
	if ! kubectl -n "${NS}" wait --timeout="${t}s" "$@" >/dev/null 2>&1; then
		say "!! ${what} did not happen within ${t}s. What Kubernetes says:"
		kubectl -n "${NS}" get events --field-selector type=Warning --sort-by=.lastTimestamp | tail -5
		return 1
	fi
}

failed=()
# wait_for_detach: until no VolumeAttachment names the PV of claim "data".
wait_for_detach() {
	local pv i
	pv="$(kubectl -n "${NS}" get pvc data -o jsonpath='{.spec.volumeName}')"
	for i in $(seq 120); do
		kubectl get volumeattachments -o jsonpath='{range .items[*]}{.spec.source.persistentVolumeName}{"\n"}{end}' | grep -qx "${pv}" || return 0
		sleep 1
	done
	return 1
}
# grown_pod: a Pod on claim "data" that shows the old data and the new size.
grown_pod() {
	cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: grown}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: ${IMAGE_REGISTRY}/busybox:${IMAGE_TAG}
    command: [sh, -c, 'cat /data/hello.txt; df -h /data | tail -1; sleep 3600']
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
EOF
}

# Print csi-hub's steps as they happen: the controller pod's IP is reachable
# from the host (bridge network); the node plugin records the kubelet's calls.
hub_ip="$(kubectl -n csi-hub get pod -l app.kubernetes.io/component=controller -o jsonpath='{.items[0].status.podIP}')"
node_ip="$(kubectl -n csi-hub get pod -l app.kubernetes.io/component=node -o jsonpath='{.items[0].status.podIP}')"
flow_url="http://${hub_ip}:8080/flow/?node=http://${node_ip}:9810"
bold "Open ${flow_url} in a browser to watch every step drawn live (click one for what and why)."
last_seq="$(curl -s "http://${hub_ip}:8080/steps" | jq 'map(.seq) | max // 0')"
node_seq="$(curl -s "http://${node_ip}:9810/steps" | jq 'map(.seq) | max // 0' 2>/dev/null || echo 0)"
# stream_steps <url> <prefix>: one line per step from a /steps?watch=true stream.
stream_steps() {
	curl -sN "$1" 2>/dev/null | sed -un 's/^data: //p' |
		jq -r --unbuffered --arg p "$2" '
	  def obj: (.object // "" | if . == "" then "" else " [" + . + "]" end);
	  # periodic noise unless it fails: the liveness Probe, the attacher ListVolumes resync
	  if .kind == "csi" and (.action == "Probe" or .action == "ListVolumes") and (.result // "OK") == "OK" then empty
	  elif .kind == "trigger" then "\($p) \(.controller // "hub"): \(.action)\(obj)"
	  elif .kind == "csi" then "\($p)     CSI \(.action) -> \(.result // "OK")\(if .detail then " (" + .detail + ")" else "" end)"
	  elif .kind == "node" then "\($p) kubelet -> driver: \(.action) -> \(.result // "OK")\(obj)\(if .detail then " (" + .detail + ")" else "" end)"
	  elif .kind == "seen" then "\($p) \(.controller // "kubernetes"): \(.action)\(obj)\(if .detail then " (" + .detail + ")" else "" end)"
	  elif .kind == "write" then "\($p)     API \(.action) -> \(.result // "")"
	  elif (.action == "VolumeFailedDelete" or .action == "VolumeDelete") and (.detail // "" | test("attached"; "i")) then
	    "\($p)     Event \(.action): still attached. This is a WAIT, not a failure: a volume is deleted only after the kubelet unmounted it and it was detached; csi-hub retries until then."
	  else "\($p)     Event \(.action): \(.detail // "")" end' 2>/dev/null
}
# The watchers run in their own process group, ended with the demo (whatever
# way it ends): killing only the background subshell would leave curl running.
export -f stream_steps
setsid bash -c "stream_steps 'http://${hub_ip}:8080/steps?watch=true&after=${last_seq}' '   hub>' &
	stream_steps 'http://${node_ip}:9810/steps?watch=true&after=${node_seq}' '  node>' &
	wait" &
watchers=$!
stop_watchers() { kill -- "-${watchers}" 2>/dev/null || true; }
trap stop_watchers EXIT
trap 'exit 130' INT TERM
say "Lines starting with 'hub>' come live from csi-hub's /steps endpoint (http://${hub_ip}:8080/steps?watch=true),"
say "'node>' lines from the driver on the node (the kubelet's calls, http://${node_ip}:9810/steps?watch=true)."

run kubectl get nodes
run kubectl -n csi-hub get pods -o wide
say "csi-hub-controller runs the driver's controller side plus csi-hub (provisioner, attacher,"
say "resizer, snapshotter); csi-hub-node runs the driver's node side plus csi-hub's registrar,"
say "which told the kubelet where the driver's socket is:"
run kubectl get csinode "${NODE_NAME}" -o jsonpath='{.spec.drivers[*].name}{"\n"}'

kubectl create namespace "${NS}" >/dev/null 2>&1 || true
kubectl -n "${NS}" wait --for=jsonpath='{.metadata.name}'=default serviceaccount/default --timeout=30s >/dev/null 2>&1 || sleep 2

bold "Step 1: a PersistentVolumeClaim and a Pod that uses it"
show_example pvc-pod.yaml
say "The StorageClass 'csi-hub' waits for the first Pod (WaitForFirstConsumer): the scheduler picks"
say "a node, csi-hub's provisioner calls CreateVolume and creates the PV, kube-controller-manager"
say "binds it and creates a VolumeAttachment, csi-hub's attacher calls ControllerPublishVolume and"
say "writes attachmentMetadata, and the kubelet calls NodeStageVolume/NodePublishVolume with it."
apply_example pvc-pod.yaml
wait_or_explain 120 "the writer Pod starting" --for=condition=Ready pod/writer || failed+=("writer pod")
pause
run kubectl -n "${NS}" get pvc,pod
run kubectl get pv,volumeattachments
run kubectl -n "${NS}" exec writer -- cat /data/hello.txt || kubectl -n "${NS}" logs writer | head -2

bold "Step 2: a VolumeSnapshot of the claim"
show_example snapshot.yaml
say "The snapshot-controller creates a VolumeSnapshotContent; csi-hub's snapshotter calls"
say "CreateSnapshot and records the snapshot handle and readyToUse in its status."
apply_example snapshot.yaml
wait_or_explain 90 "the snapshot becoming ready" --for=jsonpath='{.status.readyToUse}'=true volumesnapshot/data-snap || failed+=("snapshot")
pause
run kubectl -n "${NS}" get volumesnapshot
run kubectl get volumesnapshotcontent

bold "Step 3: restore the snapshot into a new claim"
show_example restore.yaml
say "The new claim's dataSourceRef names the snapshot: csi-hub passes it to CreateVolume as the"
say "content source, so the new volume starts with the snapshot's data."
apply_example restore.yaml
if wait_or_explain 120 "the reader Pod starting" --for=condition=Ready pod/reader; then
	pause
	say "The reader Pod sees what the writer wrote before the snapshot:"
	run kubectl -n "${NS}" logs reader
else
	failed+=("restore")
fi

# ext4 grows while mounted only for a process with CAP_SYS_RESOURCE; some
# machines (sandboxes, some CI) drop it from every process's bounding set.
online_ext4() { (( (16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status) >> 24) & 1 )); }
if online_ext4; then
	bold "Step 4: grow the first claim while its Pod runs"
	show_example resize.yaml
	say "csi-hub's resizer calls ControllerExpandVolume and updates the PV; then the kubelet calls"
	say "NodeExpandVolume, which grows the mounted filesystem. The writer prints 'df' every 5s."
	run kubectl -n "${NS}" exec writer -- df -h /data || true
	apply_example resize.yaml
	if wait_or_explain 120 "the claim growing to 256Mi" --for=jsonpath='{.status.capacity.storage}'=256Mi pvc/data; then
		sleep 6
		run kubectl -n "${NS}" exec writer -- df -h /data || kubectl -n "${NS}" logs writer --tail=1
	else
		failed+=("resize")
	fi
else
	bold "Step 4: grow the first claim (offline: this machine cannot grow a mounted ext4)"
	say "ext4 grows while mounted only with CAP_SYS_RESOURCE, which this machine's capability bounding"
	say "set lacks (xfs would grow online: StorageClass csi-hub-xfs). So the claim grows while no Pod"
	say "uses it: the writer goes, kube-controller-manager detaches the volume, csi-hub's resizer calls"
	say "ControllerExpandVolume, and the next Pod's NodeStageVolume grows the filesystem before mounting."
	run kubectl -n "${NS}" exec writer -- df -h /data || true
	run kubectl -n "${NS}" delete pod writer --wait=true
	wait_for_detach || say "!! the volume was not detached within 120s"
	show_example resize.yaml
	apply_example resize.yaml
	grown_pod | kubectl -n "${NS}" apply -f -
	if wait_or_explain 120 "the claim growing to 256Mi" --for=jsonpath='{.status.capacity.storage}'=256Mi pvc/data &&
		wait_or_explain 60 "the new Pod starting" --for=condition=Ready pod/grown; then
		say "The new Pod reads the old data on the grown filesystem:"
		run kubectl -n "${NS}" logs grown
	else
		failed+=("resize")
	fi
fi
run kubectl -n "${NS}" get pvc

bold "Step 5: clean up"
say "Deleting the namespace deletes the Pods (NodeUnpublish/NodeUnstage, ControllerUnpublish),"
say "the snapshot (DeleteSnapshot) and the claims (DeleteVolume; the PVs go away)."
say "Expect VolumeDelete / Warning VolumeFailedDelete '... still attached' events on the way: the claim goes while its"
say "volume is still attached (the Pod is stopping), and a volume must not be deleted before the kubelet"
say "unmounted it and it was detached. It is the normal wait, retried until the detach is done."
run kubectl delete namespace "${NS}" --wait=true --timeout=120s
sleep 3
run kubectl get pv
sleep 1
stop_watchers

if ((${#failed[@]})); then
	die "the demo's steps did not all work: ${failed[*]} (the cluster is still up; make cluster-down removes it)"
fi
bold "Done."
say "The page stays live while the cluster runs: ${flow_url}"
say "The cluster is still up: export KUBECONFIG=${KUBECONFIG_ADMIN} and use ${KUBECTL}"
say "(more examples in manifests/examples/: block-pvc.yaml, clone.yaml, statefulset.yaml)."
say "Tear it all down (processes, mounts, loop devices, state) with: make cluster-down"
