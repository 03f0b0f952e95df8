package provisioner

import (
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// TestHandoverWithOfficialProvisioner proves csi-hub speaks the
// external-provisioner's object protocol, so a cluster can switch either way
// with no migration: the PV each provisions has the same shape, csi-hub
// deletes (DeleteVolume, finalizer, PV) what the official sidecar provisioned
// without touching it before, and the official sidecar deletes what csi-hub
// provisioned.
func TestHandoverWithOfficialProvisioner(t *testing.T) {
	e := baseEnv(t, DefaultConfig())
	e.startFake(fakedriver.Options{Topology: true})
	e.node("n1", "zone-a")
	sc := e.storageClass("handover", withPolicy(v1.PersistentVolumeReclaimDelete))
	byOfficial, byHub := e.provisionEach(t, sc.Name, e.waitBound)
	comparePVs(t, byOfficial, byHub)

	// csi-hub adopts the official sidecar's PV as it is ...
	time.Sleep(2 * time.Second)
	if pv, err := e.kube.CoreV1().PersistentVolumes().Get(e.ctx, byOfficial.Name, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else if pv.ResourceVersion != byOfficial.ResourceVersion {
		t.Errorf("csi-hub changed the official sidecar's bound PV: %+v", pv)
	}
	// ... and deletes it when it is released; the official sidecar deletes csi-hub's.
	e.deleteEachOthers(t, byOfficial, byHub, func(pv *v1.PersistentVolume) string { return pv.Spec.CSI.VolumeHandle })
	if n := e.drv.Calls("CreateVolume"); n != 2 {
		t.Errorf("driver saw %d CreateVolume calls for 2 claims", n)
	}
	// The official sidecar may repeat the (idempotent) DeleteVolume when a PV
	// update races its own deletion; csi-hub calls it once.
	deletes := map[string]int{}
	for _, r := range fakedriver.RequestsOf[*csi.DeleteVolumeRequest](e.drv) {
		deletes[r.GetVolumeId()]++
	}
	if n := deletes[byOfficial.Spec.CSI.VolumeHandle]; n != 1 {
		t.Errorf("csi-hub called DeleteVolume %d times for %s, want once", n, byOfficial.Spec.CSI.VolumeHandle)
	}
	if deletes[byHub.Spec.CSI.VolumeHandle] == 0 {
		t.Errorf("the official sidecar never called DeleteVolume for %s", byHub.Spec.CSI.VolumeHandle)
	}
}

// compareMeta checks that two PVs carry the same annotations, labels and
// finalizers.
func compareMeta(t *testing.T, official, hub *v1.PersistentVolume) {
	t.Helper()
	if !maps.Equal(official.Annotations, hub.Annotations) {
		t.Errorf("annotations: official %v, csi-hub %v", official.Annotations, hub.Annotations)
	}
	if !maps.Equal(official.Labels, hub.Labels) {
		t.Errorf("labels: official %v, csi-hub %v", official.Labels, hub.Labels)
	}
	if !slices.Equal(official.Finalizers, hub.Finalizers) {
		t.Errorf("finalizers: official %v, csi-hub %v", official.Finalizers, hub.Finalizers)
	}
}

// comparePVs checks that two PVs provisioned from the same kind of claim have
// the same protocol footprint: everything but names, UIDs, volume handles and
// the provisioner identity's value.
func comparePVs(t *testing.T, official, hub *v1.PersistentVolume) {
	t.Helper()
	compareMeta(t, official, hub)
	keys := func(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
	if o, h := keys(official.Spec.CSI.VolumeAttributes), keys(hub.Spec.CSI.VolumeAttributes); !slices.Equal(o, h) {
		t.Errorf("spec.csi.volumeAttributes keys: official %v, csi-hub %v", o, h)
	}
	normalize := func(pv *v1.PersistentVolume) v1.PersistentVolumeSpec {
		s := *pv.Spec.DeepCopy()
		s.ClaimRef = &v1.ObjectReference{Kind: s.ClaimRef.Kind, APIVersion: s.ClaimRef.APIVersion, Namespace: s.ClaimRef.Namespace}
		s.CSI.VolumeHandle, s.CSI.VolumeAttributes = "", nil
		return s
	}
	if o, h := normalize(official), normalize(hub); !reflect.DeepEqual(o, h) {
		t.Errorf("spec differs beyond names and handles:\nofficial %+v\ncsi-hub  %+v", o, h)
	}
}

// officialArgs are the flags the official external-provisioner runs with in
// the handover tests.
func (e *env) officialArgs() []string {
	return []string{"--csi-address=" + e.socket, "--retry-interval-start=100ms", "--retry-interval-max=2s", "--v=3"}
}

// provisionEach provisions claim "by-official" of class with the official
// sidecar, stops it, starts csi-hub and provisions "by-hub"; wait returns a
// claim's PV once it is there.
func (e *env) provisionEach(t *testing.T, class string, wait func(string) (*v1.PersistentVolumeClaim, *v1.PersistentVolume)) (byOfficial, byHub *v1.PersistentVolume) {
	t.Helper()
	stopOfficial := e.c.StartSidecar(t, "provisioner", e.officialArgs()...)
	e.createPVC("by-official", class, "1Gi")
	_, byOfficial = wait("by-official")
	stopOfficial()

	e.startHub()
	e.createPVC("by-hub", class, "1Gi")
	_, byHub = wait("by-hub")
	return byOfficial, byHub
}

// deleteEachOthers checks the handover both ways: csi-hub (running) deletes
// the PV the official sidecar provisioned, then, with csi-hub stopped, the
// official sidecar deletes csi-hub's; each backend volume (found by handle)
// must be gone with its PV.
func (e *env) deleteEachOthers(t *testing.T, byOfficial, byHub *v1.PersistentVolume, handle func(*v1.PersistentVolume) string) {
	t.Helper()
	e.deletePVC("by-official")
	e.waitPVGone(byOfficial.Name)
	if _, ok := e.drv.Volume(handle(byOfficial)); ok {
		t.Errorf("csi-hub removed PV %s but not its backend volume", byOfficial.Name)
	}
	if err := e.hub.Stop(); err != nil {
		t.Fatal(err)
	}
	e.c.StartSidecar(t, "provisioner", e.officialArgs()...)
	e.deletePVC("by-hub")
	e.waitPVGone(byHub.Name)
	if _, ok := e.drv.Volume(handle(byHub)); ok {
		t.Errorf("the official sidecar removed PV %s but not its backend volume", byHub.Name)
	}
}
