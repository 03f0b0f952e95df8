package attacher_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/attacher"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// In-tree volume migration on the real control plane: Pods use in-tree PVs
// (and inline in-tree volumes); kube-controller-manager's attach/detach
// controller, with CSI migration complete for these plugins, creates
// VolumeAttachments for the CSI driver; the fake driver serves under the
// real CSI name.

// migrationEnv is newEnv with the driver under its real name.
func migrationEnv(t *testing.T, driver string) *env {
	t.Helper()
	e := newBaseEnv(t, "mig")
	e.name = driver
	e.startDriver(t, fakedriver.Options{Attach: true})
	e.registerNode()
	return e
}

// inTreeCase is one migrated plugin: the in-tree source of a PV or Pod
// volume, and the handle the driver knows the volume by once translated.
type inTreeCase struct {
	driver string
	pv     func(disk string) (corev1.PersistentVolumeSource, map[string]string)
	inline func(disk string) corev1.VolumeSource
	handle func(disk string, inline bool) string
	attrs  map[string]string // volume_context of the publish request
}

var inTreeCases = []inTreeCase{{
	driver: "ebs.csi.aws.com",
	pv: func(disk string) (corev1.PersistentVolumeSource, map[string]string) {
		return corev1.PersistentVolumeSource{AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{
			VolumeID: "aws://us-east-1a/" + disk, FSType: "xfs"}}, nil
	},
	inline: func(disk string) corev1.VolumeSource {
		return corev1.VolumeSource{AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: disk, FSType: "xfs"}}
	},
	handle: func(disk string, _ bool) string { return disk },
	attrs:  map[string]string{"partition": "0"},
}, {
	driver: "pd.csi.storage.gke.io",
	pv: func(disk string) (corev1.PersistentVolumeSource, map[string]string) {
		return corev1.PersistentVolumeSource{GCEPersistentDisk: &corev1.GCEPersistentDiskVolumeSource{PDName: disk, FSType: "xfs"}},
			map[string]string{corev1.LabelTopologyZone: "us-central1-a"}
	},
	inline: func(disk string) corev1.VolumeSource {
		return corev1.VolumeSource{GCEPersistentDisk: &corev1.GCEPersistentDiskVolumeSource{PDName: disk, FSType: "xfs"}}
	},
	handle: func(disk string, inline bool) string {
		if inline {
			return "projects/UNSPECIFIED/zones/UNSPECIFIED/disks/" + disk
		}
		return "projects/UNSPECIFIED/zones/us-central1-a/disks/" + disk
	},
	attrs: map[string]string{"partition": ""},
}}

// inTreePV creates a backend volume and an in-tree PV of it bound to claim.
func (e *env) inTreePV(tc inTreeCase, claim string) (pvName, handle string) {
	e.t.Helper()
	disk := "vol-" + strings.ReplaceAll(e.ns, "-", "") + claim
	handle = tc.handle(disk, false)
	if _, err := e.driver.AddVolume(fakedriver.Volume{ID: handle, Name: disk, CapacityBytes: 1 << 30}); err != nil {
		e.t.Fatal(err)
	}
	pvName = e.boundPV(claim, handle, func(pv *corev1.PersistentVolume, _ *corev1.PersistentVolumeClaim) {
		pv.Spec.PersistentVolumeSource, pv.Labels = tc.pv(disk)
	})
	return pvName, handle
}

// publishOf returns the last ControllerPublishVolume request for handle.
func (e *env) publishOf(handle string) *csi.ControllerPublishVolumeRequest {
	e.t.Helper()
	var last *csi.ControllerPublishVolumeRequest
	for _, r := range fakedriver.RequestsOf[*csi.ControllerPublishVolumeRequest](e.driver) {
		if r.GetVolumeId() == handle {
			last = r
		}
	}
	if last == nil {
		e.t.Fatalf("no ControllerPublishVolume for %s", handle)
	}
	return last
}

// TestMigratedInTreeVolumes: for EBS and GCE PD, a Pod's in-tree PV and an
// inline in-tree volume are published to the node's driver node ID with the
// translated volume ID, capability and context, and unpublished when the Pod
// goes; the PV carries the attacher finalizer while attached, as with
// external-attacher.
func TestMigratedInTreeVolumes(t *testing.T) {
	for _, tc := range inTreeCases {
		t.Run(tc.driver, func(t *testing.T) {
			e := migrationEnv(t, tc.driver)
			e.startHub()
			finalizer := attacher.FinalizerName(tc.driver)

			// An in-tree PV.
			pvName, handle := e.inTreePV(tc, "data")
			e.pod("app", "data")
			va := e.va(pvName)
			if va.Spec.Attacher != tc.driver {
				t.Fatalf("kube-controller-manager made a VolumeAttachment for %q, want %s", va.Spec.Attacher, tc.driver)
			}
			got := e.waitVA(va.Name, "attached", time.Minute, attached)
			req := e.publishOf(handle)
			if req.GetNodeId() != e.nodeID || req.GetVolumeCapability().GetMount().GetFsType() != "xfs" ||
				req.GetVolumeCapability().GetAccessMode().GetMode() != csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER ||
				!maps.Equal(req.GetVolumeContext(), tc.attrs) {
				t.Errorf("ControllerPublishVolume %v: want node %s, xfs, single-node-writer, context %v", req, e.nodeID, tc.attrs)
			}
			if got.Annotations[attacher.NodeIDAnnotation] != e.nodeID || !slices.Contains(got.Finalizers, finalizer) {
				t.Errorf("VolumeAttachment annotations %v finalizers %v", got.Annotations, got.Finalizers)
			}
			pv, err := e.c.Client.CoreV1().PersistentVolumes().Get(e.ctx, pvName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(pv.Finalizers, finalizer) || pv.Spec.CSI != nil {
				t.Errorf("PV finalizers %v, csi %v: want the attacher finalizer on the unchanged in-tree PV", pv.Finalizers, pv.Spec.CSI)
			}
			if v, _ := e.driver.Volume(handle); !slices.Equal(slices.Collect(maps.Keys(v.Attachments)), []string{e.nodeID}) {
				t.Errorf("backend attachments %v", v.Attachments)
			}
			e.deletePod("app")
			e.waitVAGone(va.Name)
			if v, _ := e.driver.Volume(handle); len(v.Attachments) != 0 {
				t.Errorf("backend attachments after detach %v", v.Attachments)
			}
			e.releasePV("data", pvName) // the attacher finalizer goes with the last VolumeAttachment

			// An inline in-tree volume: kube-controller-manager translates it
			// into spec.source.inlineVolumeSpec.
			disk := "vol-" + strings.ReplaceAll(e.ns, "-", "") + "inline"
			handle = tc.handle(disk, true)
			if _, err := e.driver.AddVolume(fakedriver.Volume{ID: handle, Name: disk, CapacityBytes: 1 << 30}); err != nil {
				t.Fatal(err)
			}
			e.inlinePod("inline", tc.inline(disk))
			va = e.inlineVA()
			if va.Spec.Source.InlineVolumeSpec.CSI == nil || va.Spec.Source.InlineVolumeSpec.CSI.VolumeHandle != handle {
				t.Fatalf("inline VolumeAttachment source %+v, want the translated handle %s", va.Spec.Source, handle)
			}
			e.waitVA(va.Name, "attached", time.Minute, attached)
			if req := e.publishOf(handle); req.GetNodeId() != e.nodeID || req.GetVolumeCapability().GetMount().GetFsType() != "xfs" {
				t.Errorf("inline ControllerPublishVolume %v", req)
			}
			e.deletePod("inline")
			e.waitVAGone(va.Name)
			if v, _ := e.driver.Volume(handle); len(v.Attachments) != 0 {
				t.Errorf("inline backend attachments after detach %v", v.Attachments)
			}
		})
	}
}

// TestMigratedPVHandoverWithOfficialAttacher: external-attacher v4.13.0 and
// csi-hub attach the same kind of in-tree EBS PV; the CSI requests and the
// objects they leave are the same, and each detaches what the other attached.
func TestMigratedPVHandoverWithOfficialAttacher(t *testing.T) {
	tc := inTreeCases[0]
	e := migrationEnv(t, tc.driver)

	stopOfficial := officialAttacher(t, e)
	pv1, h1 := e.inTreePV(tc, "one")
	e.pod("app1", "one")
	va1 := e.waitVA(e.va(pv1).Name, "attached by the official attacher", time.Minute, attached)
	stopOfficial()

	e.startHub()
	pv2, h2 := e.inTreePV(tc, "two")
	e.pod("app2", "two")
	va2 := e.waitVA(e.va(pv2).Name, "attached by csi-hub", time.Minute, attached)

	official, hub := e.publishOf(h1), e.publishOf(h2)
	if official.GetNodeId() != hub.GetNodeId() || !maps.Equal(official.GetVolumeContext(), hub.GetVolumeContext()) ||
		official.GetReadonly() != hub.GetReadonly() || official.GetVolumeCapability().String() != hub.GetVolumeCapability().String() {
		t.Errorf("ControllerPublishVolume differs:\nofficial %v\ncsi-hub  %v", official, hub)
	}
	// The fake driver's devicePath names the volume: compare the keys.
	metaKeys := func(va *storagev1.VolumeAttachment) []string {
		return slices.Sorted(maps.Keys(va.Status.AttachmentMetadata))
	}
	if !slices.Equal(va1.Finalizers, va2.Finalizers) || !maps.Equal(va1.Annotations, va2.Annotations) ||
		!slices.Equal(metaKeys(va1), metaKeys(va2)) || va1.Status.AttachError != nil || va2.Status.AttachError != nil {
		t.Errorf("VolumeAttachments differ:\nofficial %v %v %v\ncsi-hub  %v %v %v", va1.Finalizers, va1.Annotations, va1.Status,
			va2.Finalizers, va2.Annotations, va2.Status)
	}
	p1, err := e.c.Client.CoreV1().PersistentVolumes().Get(e.ctx, pv1, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := e.c.Client.CoreV1().PersistentVolumes().Get(e.ctx, pv2, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// As a set: csi-hub adds its finalizer with a strategic merge patch,
	// which puts it first (see attacher's package doc).
	if !slices.Equal(slices.Sorted(slices.Values(p1.Finalizers)), slices.Sorted(slices.Values(p2.Finalizers))) {
		t.Errorf("PV finalizers: official %v, csi-hub %v", p1.Finalizers, p2.Finalizers)
	}

	// csi-hub detaches the official attacher's VolumeAttachment ...
	e.deletePod("app1")
	e.waitVAGone(va1.Name)
	if v, _ := e.driver.Volume(h1); len(v.Attachments) != 0 {
		t.Errorf("csi-hub did not unpublish the official attacher's attachment: %v", v.Attachments)
	}
	e.releasePV("one", pv1)
	// ... and the official attacher detaches csi-hub's.
	if err := e.hub.Stop(); err != nil {
		t.Fatal(err)
	}
	officialAttacher(t, e)
	e.deletePod("app2")
	e.waitVAGone(va2.Name)
	if v, _ := e.driver.Volume(h2); len(v.Attachments) != 0 {
		t.Errorf("the official attacher did not unpublish csi-hub's attachment: %v", v.Attachments)
	}
	e.releasePV("two", pv2)
}

// TestUntranslatableInTreePV: a VolumeAttachment of the driver for an in-tree
// PV csi-translation-lib cannot translate gets a Warning naming the problem
// and an attachError, and no CSI call or finalizer.
func TestUntranslatableInTreePV(t *testing.T) {
	e := migrationEnv(t, "ebs.csi.aws.com")
	e.startHub()
	pvName := e.boundPV("bad", "", func(pv *corev1.PersistentVolume, _ *corev1.PersistentVolumeClaim) {
		pv.Spec.PersistentVolumeSource = corev1.PersistentVolumeSource{AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{
			VolumeID: "aws://us-east-1a/disk-1"}}
	})
	va := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-bad"},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: e.name, NodeName: e.node,
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pvName}},
	}
	if _, err := e.c.Client.StorageV1().VolumeAttachments().Create(e.ctx, va, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expectWarning(va.Name, "AttachFailed", "Invalid format for AWS volume")
	got := e.waitVA(va.Name, "to report the attach error", 30*time.Second, func(va *storagev1.VolumeAttachment) bool {
		return va.Status.AttachError != nil
	})
	if !strings.Contains(got.Status.AttachError.Message, pvName) || len(got.Finalizers) != 0 {
		t.Errorf("attachError %q (want it to name PV %s), finalizers %v", got.Status.AttachError.Message, pvName, got.Finalizers)
	}
	if n := e.driver.Calls("ControllerPublishVolume"); n != 0 {
		t.Errorf("%d ControllerPublishVolume calls for an untranslatable PV", n)
	}
	e.deleteVA(va.Name)
	e.waitVAGone(va.Name)
}

// inlinePod creates a pod on e.node with an inline in-tree volume.
func (e *env) inlinePod(name string, src corev1.VolumeSource) {
	e.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: corev1.PodSpec{
			NodeName:   e.node,
			Containers: []corev1.Container{{Name: "app", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes:    []corev1.Volume{{Name: "data", VolumeSource: src}},
		},
	}
	if _, err := e.c.Client.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// inlineVA waits for kube-controller-manager's VolumeAttachment of an inline
// volume on e.node.
func (e *env) inlineVA() *storagev1.VolumeAttachment {
	e.t.Helper()
	var found *storagev1.VolumeAttachment
	e.waitFor("kube-controller-manager to create the VolumeAttachment of the inline volume", 2*time.Minute, func() (bool, error) {
		list, err := e.c.Client.StorageV1().VolumeAttachments().List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for i := range list.Items {
			va := &list.Items[i]
			if va.Spec.NodeName == e.node && va.Spec.Attacher == e.name && va.Spec.Source.InlineVolumeSpec != nil &&
				ptr.Deref(va.Spec.Source.PersistentVolumeName, "") == "" {
				found = va
				return true, nil
			}
		}
		return false, nil
	})
	return found
}
