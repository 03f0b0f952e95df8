package flow

import (
	"context"
	"fmt"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/csi-hub/csi-hub/internal/steps"
)

var getOpts = metav1.GetOptions{}

// chain is what the API still holds of one story.
type chain struct {
	claim *corev1.PersistentVolumeClaim
	pv    *corev1.PersistentVolume
	vas   []storagev1.VolumeAttachment
	out   []apiStep
}

func (c *chain) add(t time.Time, format string, args ...any) {
	c.out = append(c.out, apiStep{time: t, text: fmt.Sprintf(format, args...)})
}

// fromAPI rebuilds the story of ref from what the API still shows: the
// objects' timestamps, annotations and status, and the events not yet expired
// (an hour by default). It returns ref's creation time.
func fromAPI(ctx context.Context, kube kubernetes.Interface, snap snapclient.Interface, ref Ref) ([]apiStep, time.Time, error) {
	var c chain
	var created time.Time
	var err error
	switch ref.Kind {
	case "PersistentVolumeClaim":
		if c.claim, err = kube.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, getOpts); err != nil {
			return nil, created, fmt.Errorf("%s: %w", ref.Object(), err)
		}
		created = c.claim.CreationTimestamp.Time
		if c.claim.Spec.VolumeName != "" {
			c.pv, _ = kube.CoreV1().PersistentVolumes().Get(ctx, c.claim.Spec.VolumeName, getOpts)
		}
	case "PersistentVolume":
		if c.pv, err = kube.CoreV1().PersistentVolumes().Get(ctx, ref.Name, getOpts); err != nil {
			return nil, created, fmt.Errorf("%s: %w", ref.Object(), err)
		}
		created = c.pv.CreationTimestamp.Time
	case "VolumeAttachment":
		va, err := kube.StorageV1().VolumeAttachments().Get(ctx, ref.Name, getOpts)
		if err != nil {
			return nil, created, fmt.Errorf("%s: %w", ref.Object(), err)
		}
		created = va.CreationTimestamp.Time
		if p := va.Spec.Source.PersistentVolumeName; p != nil {
			c.pv, _ = kube.CoreV1().PersistentVolumes().Get(ctx, *p, getOpts)
		}
		if c.pv == nil {
			c.vas = []storagev1.VolumeAttachment{*va}
		}
	case "VolumeSnapshot":
		if snap == nil {
			return nil, created, fmt.Errorf("%s: no snapshot API client", ref.Object())
		}
		return snapshotFromAPI(ctx, kube, snap, ref)
	}
	if c.pv != nil && c.claim == nil && c.pv.Spec.ClaimRef != nil {
		ref := c.pv.Spec.ClaimRef
		if cl, err := kube.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, getOpts); err == nil && cl.UID == ref.UID {
			c.claim = cl
		}
	}
	if c.pv != nil {
		list, err := kube.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, va := range list.Items {
				if p := va.Spec.Source.PersistentVolumeName; p != nil && *p == c.pv.Name {
					c.vas = append(c.vas, va)
				}
			}
		}
	}
	c.claimSteps()
	c.volumeSteps()
	for _, va := range c.vas {
		c.attachmentSteps(va)
	}
	c.events(ctx, kube)
	sortAPISteps(c.out)
	return c.out, created, nil
}

func (c *chain) claimSteps() {
	cl := c.claim
	if cl == nil {
		return
	}
	t := cl.CreationTimestamp.Time
	class := ""
	if cl.Spec.StorageClassName != nil {
		class = *cl.Spec.StorageClassName
	}
	size := cl.Spec.Resources.Requests[corev1.ResourceStorage]
	c.add(t, "PersistentVolumeClaim %s/%s created: asks for %s of StorageClass %q.", cl.Namespace, cl.Name, size.String(), class)
	if p := cl.Annotations["volume.kubernetes.io/storage-provisioner"]; p != "" {
		c.add(t, "kube-controller-manager handed the claim to provisioner %s (annotation volume.kubernetes.io/storage-provisioner; time not kept).", p)
	}
	if n := cl.Annotations[annSelectedNode]; n != "" {
		c.add(t, "The scheduler picked node %s for the claim's first Pod (annotation %s; time not kept).", n, annSelectedNode)
	}
	if cl.Status.Phase == corev1.ClaimBound {
		bt := t
		if c.pv != nil {
			bt = c.pv.CreationTimestamp.Time
		}
		c.add(bt, "kube-controller-manager bound the claim to PV %s (phase Bound; time not kept, shown at the PV's creation).", cl.Spec.VolumeName)
	} else {
		c.add(t, "The claim is %s now.", cl.Status.Phase)
	}
	if capa, ok := cl.Status.Capacity[corev1.ResourceStorage]; ok {
		req := cl.Spec.Resources.Requests[corev1.ResourceStorage]
		if capa.Cmp(req) < 0 {
			c.add(time.Now(), "The claim asks for %s but has %s: an expansion is pending.", req.String(), capa.String())
		} else {
			c.add(time.Now(), "The claim's capacity is %s now.", capa.String())
		}
	}
	if d := cl.DeletionTimestamp; d != nil {
		c.add(d.Time, "Someone deleted the claim; it waits for finalizers %v.", cl.Finalizers)
	}
}

func (c *chain) volumeSteps() {
	pv := c.pv
	if pv == nil {
		return
	}
	handle := ""
	if pv.Spec.CSI != nil {
		handle = pv.Spec.CSI.VolumeHandle
	}
	size := pv.Spec.Capacity[corev1.ResourceStorage]
	by := "someone"
	if p := pv.Annotations["pv.kubernetes.io/provisioned-by"]; p != "" {
		by = "the provisioner of " + p + " (csi-hub)"
	}
	c.add(pv.CreationTimestamp.Time, "PV %s created by %s: %s, volume handle %s (CreateVolume had succeeded).", pv.Name, by, size.String(), handle)
	if pv.Status.Phase != corev1.VolumeBound {
		c.add(time.Now(), "The PV is %s now.", pv.Status.Phase)
	}
	if d := pv.DeletionTimestamp; d != nil {
		c.add(d.Time, "The PV is being deleted; it waits for finalizers %v.", pv.Finalizers)
	}
}

func (c *chain) attachmentSteps(va storagev1.VolumeAttachment) {
	c.add(va.CreationTimestamp.Time, "kube-controller-manager created VolumeAttachment %s: attach the volume to node %s for a Pod there.", va.Name, va.Spec.NodeName)
	if va.Status.Attached {
		c.add(va.CreationTimestamp.Time, "csi-hub's attacher attached it (ControllerPublishVolume; status.attached true, time not kept): from here the kubelet can stage and publish the volume on the node.")
	}
	if e := va.Status.AttachError; e != nil {
		c.add(e.Time.Time, "FAILED: attaching: %s", e.Message)
	}
	if e := va.Status.DetachError; e != nil {
		c.add(e.Time.Time, "FAILED: detaching: %s", e.Message)
	}
	if d := va.DeletionTimestamp; d != nil {
		c.add(d.Time, "kube-controller-manager asked for the detach (the VolumeAttachment is being deleted).")
	}
}

// events adds the objects' events still kept by the API server.
func (c *chain) events(ctx context.Context, kube kubernetes.Interface) {
	if c.claim != nil {
		addEvents(ctx, kube, c.claim.Namespace, "PersistentVolumeClaim", c.claim.Name, &c.out)
	}
	if c.pv != nil {
		addEvents(ctx, kube, "", "PersistentVolume", c.pv.Name, &c.out)
	}
	for _, va := range c.vas {
		addEvents(ctx, kube, "", "VolumeAttachment", va.Name, &c.out)
	}
}

// addEvents lists the events of one object; ns "" searches every namespace
// (events of cluster-scoped objects land in "default").
func addEvents(ctx context.Context, kube kubernetes.Interface, ns, kind, name string, out *[]apiStep) {
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name}.AsSelector().String()
	list, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			*out = append(*out, apiStep{time: time.Now(), text: fmt.Sprintf("(events of %s %s not read: %v)", kind, name, err)})
		}
		return
	}
	for _, e := range list.Items {
		t := e.LastTimestamp.Time
		if t.IsZero() {
			t = e.EventTime.Time
		}
		if t.IsZero() {
			t = e.CreationTimestamp.Time
		}
		who := e.Source.Component
		if who == "" {
			who = e.ReportingController
		}
		times := ""
		if e.Count > 1 {
			times = fmt.Sprintf(", %d times", e.Count)
		}
		s := steps.Step{Kind: steps.Event, Action: e.Reason, Result: e.Type, Detail: e.Message}
		text := fmt.Sprintf("%s event %s on %s %s (from %s%s): %s", e.Type, e.Reason, kind, name, who, times, e.Message)
		if IsWait(s) {
			text += " (this is the normal wait for the detach, not a failure)"
		} else if Failed(s) {
			text = "FAILED: " + text
		}
		*out = append(*out, apiStep{time: t, text: text})
	}
}

func snapshotFromAPI(ctx context.Context, kube kubernetes.Interface, snap snapclient.Interface, ref Ref) ([]apiStep, time.Time, error) {
	vs, err := snap.SnapshotV1().VolumeSnapshots(ref.Namespace).Get(ctx, ref.Name, getOpts)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", ref.Object(), err)
	}
	var c chain
	t := vs.CreationTimestamp.Time
	src := ""
	if vs.Spec.Source.PersistentVolumeClaimName != nil {
		src = "of claim " + *vs.Spec.Source.PersistentVolumeClaimName
	}
	c.add(t, "VolumeSnapshot %s/%s created %s.", vs.Namespace, vs.Name, src)
	if vs.Status != nil && vs.Status.BoundVolumeSnapshotContentName != nil {
		name := *vs.Status.BoundVolumeSnapshotContentName
		if content, err := snap.SnapshotV1().VolumeSnapshotContents().Get(ctx, name, getOpts); err == nil {
			c.add(content.CreationTimestamp.Time, "The snapshot-controller created VolumeSnapshotContent %s for it.", name)
			if content.Status != nil && content.Status.SnapshotHandle != nil {
				c.add(content.CreationTimestamp.Time, "csi-hub's snapshotter called CreateSnapshot: snapshot handle %s (time not kept).", *content.Status.SnapshotHandle)
			}
			addEvents(ctx, kube, "", "VolumeSnapshotContent", name, &c.out)
		}
	}
	if vs.Status != nil && vs.Status.ReadyToUse != nil {
		c.add(time.Now(), "readyToUse is %v now.", *vs.Status.ReadyToUse)
	}
	addEvents(ctx, kube, vs.Namespace, "VolumeSnapshot", vs.Name, &c.out)
	sortAPISteps(c.out)
	return c.out, t, nil
}
