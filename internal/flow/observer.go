package flow

import (
	"context"
	"encoding/json"
	"fmt"

	volumesnapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/steps"
)

// Who took a Seen step.
const (
	byUser      = "user"
	byScheduler = "kube-scheduler"
	byKCM       = "kube-controller-manager"
	bySnapshot  = "snapshot-controller"
)

const annSelectedNode = "volume.kubernetes.io/selected-node"

// Informers are the informers the hub's controllers already use; nil ones are
// not observed (observing them would open a watch nobody else needs).
type Informers struct {
	Claims, Volumes, Attachments, Contents cache.SharedIndexInformer
}

// Observe records, as Seen steps, what other components do to the objects of
// driver: the scheduler picking a node, kube-controller-manager binding a claim
// or creating a VolumeAttachment, a user deleting a claim. Objects already
// there when the informers start are not replayed. Call before the informers
// start.
func Observe(rec *steps.Recorder, driver string, inf Informers) error {
	o := observer{rec: rec, driver: driver}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		fn  cache.ResourceEventHandlerDetailedFuncs
	}{
		{inf.Claims, cache.ResourceEventHandlerDetailedFuncs{AddFunc: o.claimAdded, UpdateFunc: o.claimUpdated, DeleteFunc: o.claimDeleted}},
		{inf.Volumes, cache.ResourceEventHandlerDetailedFuncs{AddFunc: o.volumeAdded, UpdateFunc: o.volumeUpdated, DeleteFunc: o.volumeDeleted}},
		{inf.Attachments, cache.ResourceEventHandlerDetailedFuncs{AddFunc: o.attachmentAdded, UpdateFunc: o.attachmentUpdated, DeleteFunc: o.attachmentDeleted}},
		{inf.Contents, cache.ResourceEventHandlerDetailedFuncs{AddFunc: o.contentAdded, UpdateFunc: o.contentUpdated, DeleteFunc: o.contentDeleted}},
	} {
		if h.inf == nil {
			continue
		}
		if _, err := h.inf.AddEventHandler(h.fn); err != nil {
			return fmt.Errorf("flow observer: %w", err)
		}
	}
	return nil
}

type observer struct {
	rec    *steps.Recorder
	driver string
}

func (o observer) seen(by, object, action, detail string, related []string, obj any) {
	s := steps.Step{Kind: steps.Seen, Controller: by, Object: object, Action: action, Detail: detail, Related: related}
	s.State = state(obj)
	o.rec.Record(context.Background(), s)
}

// state is the object as JSON without managedFields (noise for a reader). The
// informer's cached object is shared, so it is not modified: the fields are
// dropped from a decoded copy.
func state(obj any) json.RawMessage {
	b, err := json.Marshal(obj)
	if err != nil {
		klog.V(4).InfoS("Flow: object state not recorded", "err", err)
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return b
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
	}
	out, err := json.Marshal(m)
	if err != nil {
		return b
	}
	return out
}

// final unwraps a deleted object the informer only knew as a tombstone.
func final(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func deleting(old, cur metav1.Object) bool {
	return old.GetDeletionTimestamp() == nil && cur.GetDeletionTimestamp() != nil
}

func claimName(ns, name string) string { return "PersistentVolumeClaim " + ns + "/" + name }
func volumeName(name string) string    { return "PersistentVolume " + name }

func (o observer) claimAdded(obj any, initial bool) {
	c, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok || initial {
		return
	}
	name := claimName(c.Namespace, c.Name)
	class := ""
	if c.Spec.StorageClassName != nil {
		class = *c.Spec.StorageClassName
	}
	size := c.Spec.Resources.Requests[corev1.ResourceStorage]
	o.seen(byUser, name, "claim-created", fmt.Sprintf("asks for %s of StorageClass %q", size.String(), class), nil, c)
	if node := c.Annotations[annSelectedNode]; node != "" {
		o.seen(byScheduler, name, "node-selected", "the Pod goes to node "+node, nil, c)
	}
}

func (o observer) claimUpdated(oldObj, newObj any) {
	old, ok1 := oldObj.(*corev1.PersistentVolumeClaim)
	cur, ok2 := newObj.(*corev1.PersistentVolumeClaim)
	if !ok1 || !ok2 {
		return
	}
	name := claimName(cur.Namespace, cur.Name)
	if node := cur.Annotations[annSelectedNode]; node != "" && old.Annotations[annSelectedNode] != node {
		o.seen(byScheduler, name, "node-selected", "the Pod goes to node "+node, nil, cur)
	}
	if old.Status.Phase != cur.Status.Phase {
		switch cur.Status.Phase {
		case corev1.ClaimBound:
			o.seen(byKCM, name, "claim-bound", "bound to PV "+cur.Spec.VolumeName, []string{volumeName(cur.Spec.VolumeName)}, cur)
		case corev1.ClaimLost:
			o.seen(byKCM, name, "claim-lost", "PV "+cur.Spec.VolumeName+" is gone", nil, cur)
		}
	}
	oldReq, curReq := old.Spec.Resources.Requests[corev1.ResourceStorage], cur.Spec.Resources.Requests[corev1.ResourceStorage]
	if curReq.Cmp(oldReq) > 0 && old.Status.Phase == corev1.ClaimBound {
		o.seen(byUser, name, "claim-resize-requested", "from "+oldReq.String()+" to "+curReq.String(), nil, cur)
	}
	oldCap, hadCap := old.Status.Capacity[corev1.ResourceStorage]
	curCap, hasCap := cur.Status.Capacity[corev1.ResourceStorage]
	if hadCap && hasCap && curCap.Cmp(oldCap) > 0 {
		o.seen("", name, "claim-resized", "capacity now "+curCap.String(), nil, cur)
	}
	if deleting(old, cur) {
		o.seen(byUser, name, "claim-deleting", "", nil, cur)
	}
}

func (o observer) claimDeleted(obj any) {
	if c, ok := final(obj).(*corev1.PersistentVolumeClaim); ok {
		o.seen(byKCM, claimName(c.Namespace, c.Name), "claim-deleted", "", nil, c)
	}
}

func (o observer) ours(pv *corev1.PersistentVolume) bool {
	return pv.Spec.CSI != nil && pv.Spec.CSI.Driver == o.driver
}

// volumeRelated links a PV to its claim and to its CSI volume (the driver's
// node steps name only the volume handle).
func volumeRelated(pv *corev1.PersistentVolume) []string {
	var r []string
	if ref := pv.Spec.ClaimRef; ref != nil {
		r = append(r, claimName(ref.Namespace, ref.Name))
	}
	if pv.Spec.CSI != nil {
		r = append(r, steps.VolumeObject(pv.Spec.CSI.VolumeHandle))
	}
	return r
}

func (o observer) volumeAdded(obj any, initial bool) {
	pv, ok := obj.(*corev1.PersistentVolume)
	if !ok || initial || !o.ours(pv) {
		return
	}
	by := byUser
	if pv.Annotations["pv.kubernetes.io/provisioned-by"] == o.driver {
		by = "provisioner"
	}
	size := pv.Spec.Capacity[corev1.ResourceStorage]
	o.seen(by, volumeName(pv.Name), "pv-created", fmt.Sprintf("%s, volume handle %s", size.String(), pv.Spec.CSI.VolumeHandle), volumeRelated(pv), pv)
}

func (o observer) volumeUpdated(oldObj, newObj any) {
	old, ok1 := oldObj.(*corev1.PersistentVolume)
	cur, ok2 := newObj.(*corev1.PersistentVolume)
	if !ok1 || !ok2 || !o.ours(cur) {
		return
	}
	name := volumeName(cur.Name)
	if old.Status.Phase != cur.Status.Phase {
		switch cur.Status.Phase {
		case corev1.VolumeBound:
			o.seen(byKCM, name, "pv-bound", "", volumeRelated(cur), cur)
		case corev1.VolumeReleased:
			o.seen(byKCM, name, "pv-released", "reclaim policy "+string(cur.Spec.PersistentVolumeReclaimPolicy), volumeRelated(cur), cur)
		}
	}
	if deleting(old, cur) {
		o.seen("", name, "pv-deleting", "", volumeRelated(cur), cur)
	}
}

func (o observer) volumeDeleted(obj any) {
	if pv, ok := final(obj).(*corev1.PersistentVolume); ok && o.ours(pv) {
		o.seen("", volumeName(pv.Name), "pv-deleted", "", volumeRelated(pv), pv)
	}
}

func (o observer) attachment(obj any) (*storagev1.VolumeAttachment, []string, bool) {
	va, ok := obj.(*storagev1.VolumeAttachment)
	if !ok || va.Spec.Attacher != o.driver {
		return nil, nil, false
	}
	var related []string
	if pv := va.Spec.Source.PersistentVolumeName; pv != nil {
		related = []string{volumeName(*pv)}
	}
	return va, related, true
}

func vaDetail(va *storagev1.VolumeAttachment) string {
	pv := "an inline volume"
	if p := va.Spec.Source.PersistentVolumeName; p != nil {
		pv = "PV " + *p
	}
	return pv + " on node " + va.Spec.NodeName
}

func (o observer) attachmentAdded(obj any, initial bool) {
	va, related, ok := o.attachment(obj)
	if !ok || initial {
		return
	}
	o.seen(byKCM, "VolumeAttachment "+va.Name, "va-created", "attach "+vaDetail(va), related, va)
}

func (o observer) attachmentUpdated(oldObj, newObj any) {
	old, _, ok1 := o.attachment(oldObj)
	cur, related, ok2 := o.attachment(newObj)
	if !ok1 || !ok2 {
		return
	}
	if !old.Status.Attached && cur.Status.Attached {
		o.seen("attacher", "VolumeAttachment "+cur.Name, "va-attached", vaDetail(cur), related, cur)
	}
	if deleting(old, cur) {
		o.seen(byKCM, "VolumeAttachment "+cur.Name, "va-detach-requested", "detach "+vaDetail(cur), related, cur)
	}
}

func (o observer) attachmentDeleted(obj any) {
	if va, related, ok := o.attachment(final(obj)); ok {
		o.seen("", "VolumeAttachment "+va.Name, "va-deleted", vaDetail(va), related, va)
	}
}

func (o observer) content(obj any) (*volumesnapshotv1.VolumeSnapshotContent, []string, bool) {
	c, ok := obj.(*volumesnapshotv1.VolumeSnapshotContent)
	if !ok || c.Spec.Driver != o.driver {
		return nil, nil, false
	}
	ref := c.Spec.VolumeSnapshotRef
	return c, []string{"VolumeSnapshot " + ref.Namespace + "/" + ref.Name}, true
}

func (o observer) contentAdded(obj any, initial bool) {
	c, related, ok := o.content(obj)
	if !ok || initial {
		return
	}
	detail := "for VolumeSnapshot " + c.Spec.VolumeSnapshotRef.Namespace + "/" + c.Spec.VolumeSnapshotRef.Name
	if h := c.Spec.Source.VolumeHandle; h != nil {
		detail += " of volume " + *h
	}
	o.seen(bySnapshot, "VolumeSnapshotContent "+c.Name, "content-created", detail, related, c)
}

func ready(c *volumesnapshotv1.VolumeSnapshotContent) bool {
	return c.Status != nil && c.Status.ReadyToUse != nil && *c.Status.ReadyToUse
}

func (o observer) contentUpdated(oldObj, newObj any) {
	old, _, ok1 := o.content(oldObj)
	cur, related, ok2 := o.content(newObj)
	if !ok1 || !ok2 {
		return
	}
	if !ready(old) && ready(cur) {
		o.seen("snapshotter", "VolumeSnapshotContent "+cur.Name, "content-ready", "", related, cur)
	}
	if deleting(old, cur) {
		o.seen(bySnapshot, "VolumeSnapshotContent "+cur.Name, "content-deleting", "", related, cur)
	}
}

func (o observer) contentDeleted(obj any) {
	if c, related, ok := o.content(final(obj)); ok {
		o.seen("", "VolumeSnapshotContent "+c.Name, "content-deleted", "", related, c)
	}
}
