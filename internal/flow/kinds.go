package flow

import (
	"strconv"
	"strings"

	"github.com/csi-hub/csi-hub/internal/steps"
)

// Kind is what a newcomer is told about one kind of step: a short label for
// the lane and a paragraph on what just happened and why. The page reads the
// same table from /flow/kinds.json, so the words live once.
type Kind struct {
	Label string `json:"label"`
	Why   string `json:"why"`
}

// Key is the lookup key of a step: "<kind>:<action>" ("csi:CreateVolume",
// "seen:claim-bound", "event:ProvisioningFailed"), with one special case: a
// deletion held back because the volume is still attached (VolumeDelete, or
// VolumeFailedDelete from the driver) is "event:still-attached", a wait.
// web/flow.js has the same rule (stepKey); keep them together.
func Key(s steps.Step) string {
	if s.Kind == steps.Event && (s.Action == "VolumeFailedDelete" || s.Action == "VolumeDelete") &&
		strings.Contains(strings.ToLower(s.Detail), "attached") {
		return "event:still-attached"
	}
	return string(s.Kind) + ":" + s.Action
}

// Describe returns the label and paragraph for s (the kind's generic words
// when its action has none of its own).
func Describe(s steps.Step) Kind {
	if k, ok := Kinds[Key(s)]; ok {
		return k
	}
	k := Kinds[string(s.Kind)+":*"]
	switch s.Kind {
	case steps.Write:
		k.Label = "API " + s.Action
	case steps.Trigger:
		k.Label = s.Action
	default:
		k.Label = s.Action
	}
	return k
}

// IsWait says s reports a normal wait (retried until it passes), though
// Kubernetes files it as a Warning.
func IsWait(s steps.Step) bool { return Key(s) == "event:still-attached" }

// Failed says s went wrong: a CSI call without OK, a refused API write, a
// Warning event that is not a wait.
func Failed(s steps.Step) bool {
	switch s.Kind {
	case steps.CSI, steps.Node:
		return s.Result != "" && s.Result != "OK"
	case steps.Write:
		code, err := strconv.Atoi(s.Result)
		return err != nil || code >= 300
	case steps.Event:
		return s.Result == "Warning" && !IsWait(s)
	}
	return false
}

// Kinds is the table of step kinds. Labels are short (they sit in a lane);
// the paragraphs assume no Kubernetes storage knowledge.
var Kinds = map[string]Kind{
	// Fallbacks per kind.
	"trigger:*": {"", "A csi-hub controller noticed a change on a Kubernetes object and decided to act. Controllers never get orders: they watch objects and compare what the object asks for with what exists, then do the difference. This line says what it saw and what it is about to do."},
	"csi:*":     {"", "csi-hub called the storage driver over CSI (the Container Storage Interface, a gRPC API every Kubernetes storage driver speaks). Kubernetes itself never talks to the driver's controller side: a sidecar (here csi-hub) does it for Kubernetes."},
	"node:*":    {"", "The kubelet on the node called the driver's node service over CSI. The kubelet talks to the driver's socket on the node directly; csi-hub only sees these calls because the driver recorded them."},
	"write:*":   {"", "csi-hub wrote to the Kubernetes API: that is how a controller reports what it did, so that other components (kube-controller-manager, the scheduler, the kubelet) can take the next step."},
	"event:*":   {"", "An Event was recorded on the object: it is what `kubectl describe` shows under Events. Events are notes for people; nothing in Kubernetes acts on them."},
	"seen:*":    {"", "Another Kubernetes component changed this object; csi-hub saw the change on the watch it already has."},

	// The driver's controller calls (csi-hub is the caller).
	"csi:CreateVolume":              {"CreateVolume", "csi-hub's provisioner asked the driver to create a new volume for the claim: name, size, access mode, the StorageClass parameters and (with WaitForFirstConsumer) the node the scheduler picked. The driver answers with a volume ID (the volume handle) that Kubernetes will use in every later call."},
	"csi:DeleteVolume":              {"DeleteVolume", "The claim is gone and the PV's reclaimPolicy is Delete, so csi-hub's provisioner asked the driver to delete the volume and its data. Only after it succeeds does the PV object go away, so no storage is leaked."},
	"csi:ControllerPublishVolume":   {"ControllerPublishVolume", "csi-hub's attacher asked the driver to make the volume reachable from the node the Pod runs on (for a SAN this is 'map the LUN to the host'; here it hands the node the backing file). The answer (publish context) is written into the VolumeAttachment's status for the kubelet to use."},
	"csi:ControllerUnpublishVolume": {"ControllerUnpublishVolume", "No Pod on that node uses the volume any more: csi-hub's attacher asked the driver to take it away from the node (the opposite of ControllerPublishVolume). This is the 'detach'."},
	"csi:ControllerExpandVolume":    {"ControllerExpandVolume", "The claim asks for more space than the volume has: csi-hub's resizer asked the driver to grow the volume in the storage system. The filesystem on it is grown afterwards on the node (NodeExpandVolume or at the next NodeStageVolume)."},
	"csi:ControllerModifyVolume":    {"ControllerModifyVolume", "The claim names a different VolumeAttributesClass: csi-hub's resizer asked the driver to change the volume's attributes (e.g. its performance tier) without recreating it."},
	"csi:CreateSnapshot":            {"CreateSnapshot", "csi-hub's snapshotter asked the driver to take a point-in-time copy of the volume. The snapshot's handle and readiness go into the VolumeSnapshotContent's status."},
	"csi:DeleteSnapshot":            {"DeleteSnapshot", "The VolumeSnapshotContent is being deleted with deletionPolicy Delete: csi-hub's snapshotter asked the driver to delete the snapshot's data."},
	"csi:ListVolumes":               {"ListVolumes", "csi-hub's attacher asked the driver which volumes are published to which nodes, to notice attachments that were lost behind Kubernetes' back."},
	"csi:Probe":                     {"Probe", "A health check: is the driver up and ready? This is livenessprobe's job, done by csi-hub."},

	// The kubelet's node calls (recorded by the driver).
	"node:NodeStageVolume":     {"NodeStageVolume", "The kubelet asked the driver, on the node, to prepare the volume once per node: attach the device (here a loop device), create the filesystem if the volume is new, and mount it at a staging directory. It runs after the VolumeAttachment says 'attached'."},
	"node:NodePublishVolume":   {"NodePublishVolume", "The kubelet asked the driver to make the staged volume visible inside this Pod: a bind mount from the staging directory into the Pod's volume directory. After this the container starts and sees the files."},
	"node:NodeUnpublishVolume": {"NodeUnpublishVolume", "The Pod is gone: the kubelet asked the driver to remove the volume from the Pod's directory (unmount the bind mount)."},
	"node:NodeUnstageVolume":   {"NodeUnstageVolume", "No Pod on this node uses the volume any more: the kubelet asked the driver to unmount the staging directory and release the device. After this the VolumeAttachment can be deleted (detach)."},
	"node:NodeExpandVolume":    {"NodeExpandVolume", "The volume grew in the storage system; the kubelet asked the driver to grow the filesystem on the node so the Pod sees the new size."},
	"node:NodeGetVolumeStats":  {"NodeGetVolumeStats", "The kubelet asked how full the volume is (for metrics and kubectl describe)."},

	// Steps of other components, read off the objects.
	"seen:claim-created":          {"PVC created", "Someone (a user, a StatefulSet) created a PersistentVolumeClaim: a request for storage of a size and StorageClass. Nothing exists yet; the claim is Pending."},
	"seen:node-selected":          {"Node selected", "The StorageClass uses WaitForFirstConsumer: the claim waited for a Pod. The scheduler picked a node for the Pod and wrote it into the claim (annotation volume.kubernetes.io/selected-node), so the volume is created where the Pod can reach it."},
	"seen:claim-bound":            {"Bound", "kube-controller-manager (its PV controller) bound the claim to the new PersistentVolume: the claim's phase is Bound and spec.volumeName names the PV. From now on Pods using the claim get this volume."},
	"seen:claim-resize-requested": {"Resize asked", "Someone raised the claim's spec.resources.requests.storage: the claim asks for more space. csi-hub's resizer takes it from here."},
	"seen:claim-resized":          {"Capacity grown", "The claim's status.capacity shows the new size: the volume and its filesystem were grown."},
	"seen:claim-deleting":         {"PVC deleting", "Someone deleted the claim. It stays (Terminating) while a Pod still uses it (finalizer kubernetes.io/pvc-protection), then goes."},
	"seen:claim-deleted":          {"PVC gone", "The claim object is gone. If its PV's reclaimPolicy is Delete, the PV and its volume are deleted next."},
	"seen:claim-lost":             {"Lost", "The claim's PV is gone: the claim is Lost. Data cannot be reached through it any more."},
	"seen:pv-created":             {"PV created", "csi-hub's provisioner created the PersistentVolume object describing the new volume (its handle, size, access modes, node affinity) with claimRef pointing at the claim. kube-controller-manager will now bind the two."},
	"seen:pv-bound":               {"PV bound", "kube-controller-manager marked the PersistentVolume Bound to its claim."},
	"seen:pv-released":            {"PV released", "The claim was deleted: kube-controller-manager marked the PersistentVolume Released. With reclaimPolicy Delete, csi-hub's provisioner now deletes the volume."},
	"seen:pv-deleting":            {"PV deleting", "The PersistentVolume is being deleted; its finalizers keep it until the volume is deleted and detached."},
	"seen:pv-deleted":             {"PV gone", "The PersistentVolume object is gone: the volume no longer exists in Kubernetes."},
	"seen:va-created":             {"VolumeAttachment created", "A Pod using the volume was scheduled to a node: kube-controller-manager (its attach/detach controller) created a VolumeAttachment, asking for the volume to be attached to that node. csi-hub's attacher acts on it."},
	"seen:va-attached":            {"Attached", "The VolumeAttachment's status says attached: the volume is reachable from the node. The kubelet, which waits for this, goes on with NodeStageVolume."},
	"seen:va-detach-requested":    {"Detach asked", "No Pod on that node needs the volume any more: kube-controller-manager deleted the VolumeAttachment (it stays until csi-hub's attacher has detached the volume and removed its finalizer)."},
	"seen:va-deleted":             {"Detached", "The VolumeAttachment is gone: the volume is detached from the node."},
	"seen:content-created":        {"SnapshotContent created", "The snapshot-controller created a VolumeSnapshotContent for a VolumeSnapshot: the object csi-hub's snapshotter acts on."},
	"seen:content-ready":          {"Snapshot ready", "The VolumeSnapshotContent's status says readyToUse: the snapshot can be restored into a new claim."},
	"seen:content-deleting":       {"SnapshotContent deleting", "The VolumeSnapshotContent is being deleted (its VolumeSnapshot was deleted)."},
	"seen:content-deleted":        {"SnapshotContent gone", "The VolumeSnapshotContent object is gone."},

	// Events csi-hub emits.
	"event:Provisioning":             {"Provisioning", "csi-hub's provisioner started creating a volume for the claim (the same event external-provisioner emits)."},
	"event:ProvisioningSucceeded":    {"ProvisioningSucceeded", "The volume exists in the storage system and its PersistentVolume object was created; binding to the claim comes next."},
	"event:ProvisioningFailed":       {"ProvisioningFailed", "Creating the volume failed; the message says why (the driver's answer, a bad StorageClass parameter...). The provisioner retries with growing pauses, so a claim stays Pending until the cause is fixed."},
	"event:VolumeFailedDelete":       {"VolumeFailedDelete", "Deleting the volume failed; the provisioner retries with growing pauses and keeps the PV until it succeeds, so the storage is not leaked."},
	"event:still-attached":           {"Waiting for detach", "This is a wait, not a failure (even when Kubernetes files it as a Warning VolumeFailedDelete). The claim was deleted while its volume was still attached to a node (the Pod is stopping, the kubelet is unmounting, the VolumeAttachment is being removed). A volume must not be deleted while a node may still write to it, so the provisioner (or the driver) says 'still attached' and the deletion is retried until the detach has finished; then DeleteVolume succeeds."},
	"event:Resizing":                 {"Resizing", "csi-hub's resizer started growing the volume: it calls ControllerExpandVolume next."},
	"event:VolumeResizeSuccessful":   {"VolumeResizeSuccessful", "The volume was grown in the storage system (and, where needed, its filesystem on the node): the claim shows the new capacity."},
	"event:VolumeResizeFailed":       {"VolumeResizeFailed", "Growing the volume failed; the message says why. The resizer retries."},
	"event:FileSystemResizeRequired": {"FileSystemResizeRequired", "The volume grew in the storage system; its filesystem still has to grow on the node, which the kubelet does (NodeExpandVolume, or at the next NodeStageVolume)."},
}
