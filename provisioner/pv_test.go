package provisioner

import (
	"reflect"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestBuildPV(t *testing.T) {
	retain, del := v1.PersistentVolumeReclaimRetain, v1.PersistentVolumeReclaimDelete
	block := v1.PersistentVolumeBlock
	for _, tc := range []struct {
		name     string
		mode     *v1.PersistentVolumeMode
		topology bool
		delSec   *v1.SecretReference
		wantFS   string
		policy   *v1.PersistentVolumeReclaimPolicy
	}{
		{name: "filesystem", wantFS: "xfs", policy: &del},
		{name: "block has no fsType", mode: &block, wantFS: "", policy: &del},
		{name: "retain: no finalizer", wantFS: "xfs", policy: &retain},
		{name: "topology and deletion secret", topology: true, delSec: &v1.SecretReference{Name: "s", Namespace: "ns"}, wantFS: "xfs", policy: &del},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: testDriver,
				ReclaimPolicy: tc.policy, MountOptions: []string{"noatime"}}
			var wantFinalizers []string
			if *tc.policy == del {
				wantFinalizers = []string{finalizerPV}
			}
			claim := claimWith([]v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}, tc.mode)
			claim.ResourceVersion = "42"
			claim.Spec.StorageClassName = &sc.Name
			c := &Controller{identity: "123-4-" + testDriver, topology: tc.topology, cfg: DefaultConfig()}
			p := &plan{pvName: "pvc-1", fsType: "xfs", deletionSecret: tc.delSec,
				req:    &csi.CreateVolumeRequest{VolumeCapabilities: []*csi.VolumeCapability{{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}},
				source: &v1.CSIPersistentVolumeSource{Driver: testDriver, NodeStageSecretRef: &v1.SecretReference{Name: "st", Namespace: "ns1"}}}
			vol := &csi.Volume{VolumeId: "vol-7", VolumeContext: map[string]string{"k": "v"},
				AccessibleTopology: []*csi.Topology{{Segments: map[string]string{zoneKey: "a"}}}}
			pv := c.buildPV(claim, sc, p, vol, 5<<30)

			wantAnn := map[string]string{annDynamicallyProvisioned: testDriver, annDeletionSecretName: "", annDeletionSecretNamespace: ""}
			if tc.delSec != nil {
				wantAnn[annDeletionSecretName], wantAnn[annDeletionSecretNamespace] = "s", "ns"
			}
			if pv.Name != "pvc-1" || !reflect.DeepEqual(pv.Annotations, wantAnn) || !reflect.DeepEqual(pv.Finalizers, wantFinalizers) {
				t.Errorf("metadata = %s %v %v", pv.Name, pv.Annotations, pv.Finalizers)
			}
			wantRef := &v1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: "ns1", Name: "data", UID: claim.UID, ResourceVersion: "42"}
			if !reflect.DeepEqual(pv.Spec.ClaimRef, wantRef) {
				t.Errorf("claimRef = %+v", pv.Spec.ClaimRef)
			}
			if q := pv.Spec.Capacity[v1.ResourceStorage]; q.Cmp(resource.MustParse("5Gi")) != 0 {
				t.Errorf("capacity = %s, want 5Gi", q.String())
			}
			want := &v1.CSIPersistentVolumeSource{Driver: testDriver, VolumeHandle: "vol-7", FSType: tc.wantFS,
				VolumeAttributes:   map[string]string{"k": "v", provisionerIDKey: "123-4-" + testDriver},
				NodeStageSecretRef: &v1.SecretReference{Name: "st", Namespace: "ns1"}}
			if !reflect.DeepEqual(pv.Spec.CSI, want) {
				t.Errorf("csi = %+v\nwant %+v", pv.Spec.CSI, want)
			}
			if p.source.VolumeHandle != "" {
				t.Error("buildPV modified the plan")
			}
			if pv.Spec.PersistentVolumeReclaimPolicy != *tc.policy || pv.Spec.StorageClassName != "fast" ||
				!reflect.DeepEqual(pv.Spec.MountOptions, []string{"noatime"}) || pv.Spec.VolumeMode != tc.mode ||
				!reflect.DeepEqual(pv.Spec.AccessModes, claim.Spec.AccessModes) {
				t.Errorf("spec = %+v", pv.Spec)
			}
			if tc.topology != (pv.Spec.NodeAffinity != nil) {
				t.Errorf("nodeAffinity = %v with topology %v", pv.Spec.NodeAffinity, tc.topology)
			}
		})
	}
}

func TestShouldDelete(t *testing.T) {
	now := metav1.Now()
	pv := func(phase v1.PersistentVolumePhase, policy v1.PersistentVolumeReclaimPolicy, deleting bool, finalizers ...string) *v1.PersistentVolume {
		p := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Finalizers: finalizers}}
		if deleting {
			p.DeletionTimestamp = &now
		}
		p.Spec.PersistentVolumeReclaimPolicy, p.Status.Phase = policy, phase
		return p
	}
	for _, tc := range []struct {
		name string
		pv   *v1.PersistentVolume
		want bool
	}{
		{"released delete", pv(v1.VolumeReleased, v1.PersistentVolumeReclaimDelete, false, finalizerPV), true},
		{"released delete, PV being deleted with our finalizer", pv(v1.VolumeReleased, v1.PersistentVolumeReclaimDelete, true, finalizerPV), true},
		{"finalizer already removed", pv(v1.VolumeReleased, v1.PersistentVolumeReclaimDelete, true), false},
		{"retain", pv(v1.VolumeReleased, v1.PersistentVolumeReclaimRetain, false, finalizerPV), false},
		{"bound", pv(v1.VolumeBound, v1.PersistentVolumeReclaimDelete, false, finalizerPV), false},
	} {
		if got := shouldDelete(tc.pv); got != tc.want {
			t.Errorf("%s: shouldDelete = %v, want %v", tc.name, got, tc.want)
		}
	}
}
