package provisioner

import (
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The zero inFlight works, and each kind of memory keeps and drops what its
// comment says.
func TestInFlight(t *testing.T) {
	var f inFlight
	claim := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c", UID: "uid-1"}}
	if f.isPending("ns/c") || len(f.pendingClaims()) != 0 || f.createdFor("pv", "uid-1") || f.deletedHere("pv-uid") {
		t.Fatal("the zero inFlight remembers something")
	}
	if _, ok := f.askedTopology(claim.UID); ok {
		t.Fatal("the zero inFlight has a topology")
	}

	// A CreateVolume that may still run: pending, and its topology kept even
	// when it asked for none.
	f.mayBeCreating("ns/c", claim, nil)
	if got, ok := f.pendingClaim("ns/c"); !ok || got != claim {
		t.Errorf("pendingClaim = %v, %v; want the claim", got, ok)
	}
	if asked, ok := f.askedTopology(claim.UID); !ok || asked != nil {
		t.Errorf("askedTopology = %v, %v; want nil, true (a retry asks for no topology either)", asked, ok)
	}
	// Forgetting the claim's memory does not forget its pending volume.
	f.forget(claim.UID)
	if !f.isPending("ns/c") {
		t.Error("forget dropped the pending volume: it could leak")
	}
	if _, ok := f.askedTopology(claim.UID); ok {
		t.Error("forget kept the topology")
	}
	top := &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{"zone": "a"}}}}
	f.mayBeCreating("ns/c", claim, top)
	f.createFailed("ns/c", claim.UID)
	if _, ok := f.askedTopology(claim.UID); ok || f.isPending("ns/c") {
		t.Error("a final CreateVolume failure kept the claim pending or its topology")
	}

	// Events: the Provisioning event once; the same failure at most once per interval.
	if !f.announce(claim.UID) || f.announce(claim.UID) {
		t.Error("announce: want true once, then false")
	}
	now := time.Now()
	if !f.reportFailure(claim.UID, "boom", now) || f.reportFailure(claim.UID, "boom", now.Add(time.Second)) {
		t.Error("the same failure was reported twice within the interval")
	}
	if !f.reportFailure(claim.UID, "other", now.Add(2*time.Second)) {
		t.Error("a new failure message was not reported")
	}
	if !f.reportFailure(claim.UID, "other", now.Add(2*time.Second+failureEventInterval)) {
		t.Error("an unchanged failure was not reported again after the interval")
	}

	// PVs: created, seen by the informer; deleted, gone from it.
	f.createdPV("pv", claim.UID)
	if !f.createdFor("pv", claim.UID) || f.createdFor("pv", "other-uid") {
		t.Error("createdFor must match the PV name and the claim UID")
	}
	f.seenPV("pv")
	if f.createdFor("pv", claim.UID) {
		t.Error("seenPV kept the created PV")
	}
	f.finishedPV("pv-uid")
	if !f.deletedHere("pv-uid") {
		t.Error("finishedPV not remembered")
	}
	f.goneVolume("pv", "pv-uid")
	if f.deletedHere("pv-uid") {
		t.Error("goneVolume kept the finished PV")
	}
}
