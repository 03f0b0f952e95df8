package provisioner

import (
	"context"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

func zoneOf(t *csi.Topology) string { return t.GetSegments()[fakedriver.DefaultTopologyKey] }

func (e *env) selectNode(pvc, node string) {
	e.t.Helper()
	patch := []byte(`{"metadata":{"annotations":{"` + annSelectedNode + `":"` + node + `"}}}`)
	if _, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Patch(e.ctx, pvc, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// WaitForFirstConsumer: nothing happens until the scheduler's selected-node
// annotation appears; then the selected node's zone (from its CSINode keys
// and Node labels) is preferred and the volume lands there.
func TestWaitForFirstConsumer(t *testing.T) {
	e := newEnv(t, fakedriver.Options{Topology: true}, DefaultConfig())
	e.node("a1", "zone-a")
	nb := e.node("b1", "zone-b")
	sc := e.storageClass("wffc", waitForConsumer)
	pvc := e.createPVC("late", sc.Name, "1Gi")
	name := "pvc-" + string(pvc.UID)

	time.Sleep(2 * time.Second)
	if n := len(e.createRequests(name)); n != 0 {
		t.Fatalf("%d CreateVolume calls before a node was selected, want 0", n)
	}
	e.selectNode("late", nb.Name)
	_, pv := e.waitBound("late")

	reqs := e.createRequests(name)
	if len(reqs) != 1 {
		t.Fatalf("%d CreateVolume calls, want 1", len(reqs))
	}
	r := reqs[0].GetAccessibilityRequirements()
	if len(r.GetRequisite()) != 2 || len(r.GetPreferred()) != 2 || zoneOf(r.Preferred[0]) != "zone-b" {
		t.Errorf("accessibility requirements %v: want both zones requisite, selected node's zone-b preferred first", r)
	}
	terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Values[0] != "zone-b" {
		t.Errorf("PV node affinity %+v, want zone-b", pv.Spec.NodeAffinity)
	}
}

// allowedTopologies restricts requisite to the allowed zones (immediate binding).
func TestAllowedTopologies(t *testing.T) {
	e := newEnv(t, fakedriver.Options{Topology: true}, DefaultConfig())
	e.node("a1", "zone-a")
	e.node("b1", "zone-b")
	sc := e.storageClass("zoned", func(sc *storagev1.StorageClass) {
		sc.AllowedTopologies = []v1.TopologySelectorTerm{{MatchLabelExpressions: []v1.TopologySelectorLabelRequirement{
			{Key: fakedriver.DefaultTopologyKey, Values: []string{"zone-b"}}}}}
	})
	pvc := e.createPVC("zoned", sc.Name, "1Gi")
	_, pv := e.waitBound("zoned")
	reqs := e.createRequests("pvc-" + string(pvc.UID))
	if len(reqs) != 1 {
		t.Fatalf("%d CreateVolume calls, want 1", len(reqs))
	}
	r := reqs[0].GetAccessibilityRequirements()
	if len(r.GetRequisite()) != 1 || zoneOf(r.Requisite[0]) != "zone-b" || len(r.GetPreferred()) != 1 {
		t.Errorf("accessibility requirements %v, want only zone-b", r)
	}
	if v := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0]; v != "zone-b" {
		t.Errorf("PV in %s, want zone-b", v)
	}
}

// A final error that calls for rescheduling (ResourceExhausted with a
// selected node: the backend pool is too small here) removes selected-node so
// the scheduler picks again, reports ProvisioningFailed, and stops calling.
func TestRescheduleOnResourceExhausted(t *testing.T) {
	e := newEnv(t, fakedriver.Options{Topology: true, TotalCapacityBytes: 10 << 30}, DefaultConfig())
	na := e.node("a1", "zone-a")
	sc := e.storageClass("small", waitForConsumer)
	pvc := e.createPVC("huge", sc.Name, "50Gi")
	e.selectNode("huge", na.Name)
	e.eventually(30*time.Second, "selected-node to be removed", func() (bool, error) {
		p, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, "huge", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, has := p.Annotations[annSelectedNode]
		return !has, nil
	})
	e.waitEvent("huge", reasonFailed, v1.EventTypeWarning, "ResourceExhausted")
	calls := len(e.createRequests("pvc-" + string(pvc.UID)))
	if calls != 1 {
		t.Errorf("%d CreateVolume calls before rescheduling, want 1", calls)
	}
	time.Sleep(3 * time.Second) // retries would show up here (backoff max is 2s in tests)
	if n := len(e.createRequests("pvc-" + string(pvc.UID))); n != calls {
		t.Errorf("CreateVolume called %d more times after rescheduling; the PVC must wait for a new node", n-calls)
	}
	if len(e.drv.Volumes()) != 0 {
		t.Errorf("backend has volumes %v, want none", e.drv.Volumes())
	}
}

// A selected node that does not exist (deleted after the scheduler chose it)
// also sends the claim back to the scheduler.
func TestRescheduleWhenSelectedNodeGone(t *testing.T) {
	e := newEnv(t, fakedriver.Options{Topology: true}, DefaultConfig())
	e.node("a1", "zone-a")
	sc := e.storageClass("gone", waitForConsumer)
	e.createPVC("orphan", sc.Name, "1Gi")
	e.selectNode("orphan", e.ns+"-ghost")
	e.eventually(30*time.Second, "selected-node to be removed", func() (bool, error) {
		p, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, "orphan", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, has := p.Annotations[annSelectedNode]
		return !has, nil
	})
	e.waitEvent("orphan", reasonFailed, v1.EventTypeWarning, "does not exist")
	if n := e.drv.Calls("CreateVolume"); n != 0 {
		t.Errorf("%d CreateVolume calls for a claim whose node is gone, want 0", n)
	}
}

// A selected node where the driver never registered (no CSINode) also goes
// back to the scheduler, as with the sidecar, instead of being retried forever.
func TestRescheduleWhenSelectedNodeHasNoCSINode(t *testing.T) {
	e := newEnv(t, fakedriver.Options{Topology: true}, DefaultConfig())
	e.node("a1", "zone-a")
	bare := e.ns + "-no-driver"
	if _, err := e.kube.CoreV1().Nodes().Create(e.ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: bare,
		Labels: map[string]string{v1.LabelHostname: bare, fakedriver.DefaultTopologyKey: "zone-a"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.kube.CoreV1().Nodes().Delete(context.Background(), bare, metav1.DeleteOptions{}) })
	sc := e.storageClass("no-csinode", waitForConsumer)
	e.createPVC("unregistered", sc.Name, "1Gi")
	e.selectNode("unregistered", bare)
	e.eventually(30*time.Second, "selected-node to be removed", func() (bool, error) {
		p, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, "unregistered", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, has := p.Annotations[annSelectedNode]
		return !has, nil
	})
	e.waitEvent("unregistered", reasonFailed, v1.EventTypeWarning, "has no CSINode object")
	if n := e.drv.Calls("CreateVolume"); n != 0 {
		t.Errorf("%d CreateVolume calls for a node without the driver, want 0", n)
	}
}

// A CreateVolume that timed out may still be creating the volume in the
// backend: its retry must ask for the same topology even when the node's
// labels changed meanwhile, or the same-named call could land in another zone.
func TestRetryKeepsTopologyOfTimedOutCreate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Timeout = time.Second
	e := newEnv(t, fakedriver.Options{Topology: true, Zones: []string{"zone-a", "zone-b"}}, cfg)
	n := e.node("a1", "zone-a")
	sc := e.storageClass("sticky", waitForConsumer)
	gate := e.drv.Gate("CreateVolume")
	pvc := e.createPVC("sticky", sc.Name, "1Gi")
	e.selectNode("sticky", n.Name)
	wctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if err := gate.WaitArrived(wctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the hub's 1s timeout expires: the call may go on in the backend

	n, err := e.kube.CoreV1().Nodes().Get(e.ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels[fakedriver.DefaultTopologyKey] = "zone-b"
	if _, err := e.kube.CoreV1().Nodes().Update(e.ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Hold on until a retry that started after the relabelling reached the
	// driver: that is the call the cache must keep in zone-a.
	before := len(e.createRequests("pvc-" + string(pvc.UID)))
	e.eventually(30*time.Second, "a retry after the relabelling", func() (bool, error) {
		return len(e.createRequests("pvc-"+string(pvc.UID))) >= before+2, nil
	})
	gate.Release()
	e.waitBound("sticky")

	reqs := e.createRequests("pvc-" + string(pvc.UID))
	if len(reqs) < 2 {
		t.Fatalf("%d CreateVolume calls, want the timed-out one and at least one retry", len(reqs))
	}
	for i, r := range reqs {
		if zone := r.GetAccessibilityRequirements().GetRequisite()[0].GetSegments()[fakedriver.DefaultTopologyKey]; zone != "zone-a" {
			t.Errorf("CreateVolume call %d asked for %s, want zone-a like the first (timed-out) call", i+1, zone)
		}
	}
}
