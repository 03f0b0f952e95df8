package provisioner

import (
	"maps"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/provisioner/capacity"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

func (e *env) capacities() []storagev1.CSIStorageCapacity {
	e.t.Helper()
	list, err := e.kube.StorageV1().CSIStorageCapacities(e.ns).List(e.ctx, metav1.ListOptions{
		LabelSelector: capacity.LabelDriverName + "=" + e.driver + "," + capacity.LabelManagedBy + "=" + capacity.ManagedByValue})
	if err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

// --enable-capacity: one CSIStorageCapacity per WaitForFirstConsumer class and
// zone, with the sidecar's labels and owner, refreshed when the backend's free
// space changes, deleted with the class.
func TestStorageCapacity(t *testing.T) {
	cfg := DefaultConfig()
	cfg.EnableCapacity = true
	cfg.CapacityPollInterval = 500 * time.Millisecond
	cfg.CapacityOwnerrefLevel = 0 // the pod itself: there is no Deployment here
	e := baseEnv(t, cfg)
	pod, err := e.kube.CoreV1().Pods(e.ns).Create(e.ctx, &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "csi-hub-0"},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "hub", Image: "csi-hub"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NAMESPACE", e.ns)
	t.Setenv("POD_NAME", pod.Name)
	e.startFake(fakedriver.Options{Topology: true, TotalCapacityBytes: 10 << 30})
	e.node("a1", "zone-a")
	e.node("a2", "zone-a")
	e.node("b1", "zone-b")
	e.storageClass("immediate") // not published: the scheduler does not use capacity for it
	wffc := e.storageClass("wffc", waitForConsumer)
	e.startHub()

	byZone := func(want int64) map[string]storagev1.CSIStorageCapacity {
		got := map[string]storagev1.CSIStorageCapacity{}
		e.eventually(30*time.Second, "CSIStorageCapacity objects for both zones", func() (bool, error) {
			got = map[string]storagev1.CSIStorageCapacity{}
			for _, c := range e.capacities() {
				got[c.NodeTopology.MatchLabels[fakedriver.DefaultTopologyKey]] = c
			}
			for _, c := range got {
				if c.Capacity == nil || c.Capacity.Value() != want {
					return false, nil
				}
			}
			return len(got) == 2 && len(e.capacities()) == 2, nil
		})
		return got
	}
	got := byZone(10 << 30)
	for zone, c := range got {
		if c.StorageClassName != wffc.Name || !maps.Equal(c.NodeTopology.MatchLabels, map[string]string{fakedriver.DefaultTopologyKey: zone}) {
			t.Errorf("zone %s: object %+v", zone, c)
		}
		if len(c.OwnerReferences) != 1 || c.OwnerReferences[0].UID != pod.UID || c.OwnerReferences[0].Controller == nil || !*c.OwnerReferences[0].Controller {
			t.Errorf("zone %s: owner %+v, want the pod as controller", zone, c.OwnerReferences)
		}
	}
	if _, ok := got["zone-a"]; !ok {
		t.Fatalf("no object for zone-a: %v", got)
	}

	// Capacity used in the backend shows up after the next poll; objects
	// are updated in place, not recreated.
	if _, err := e.drv.AddVolume(fakedriver.Volume{Name: "outside", CapacityBytes: 4 << 30}); err != nil {
		t.Fatal(err)
	}
	after := byZone(6 << 30)
	for zone, c := range after {
		if c.UID != got[zone].UID {
			t.Errorf("zone %s: object replaced (%s -> %s), want an update", zone, got[zone].UID, c.UID)
		}
	}
	// Nothing changes: no more writes.
	before := e.hub.Steps.Writes()
	time.Sleep(2 * time.Second)
	if w := e.hub.Steps.Writes(); w["update csistoragecapacities"] != before["update csistoragecapacities"] || w["create csistoragecapacities"] != before["create csistoragecapacities"] {
		t.Errorf("writes while capacity was unchanged: before %v, after %v", before, w)
	}

	if err := e.kube.StorageV1().StorageClasses().Delete(e.ctx, wffc.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually(30*time.Second, "objects of the deleted class to go", func() (bool, error) {
		return len(e.capacities()) == 0, nil
	})
}
