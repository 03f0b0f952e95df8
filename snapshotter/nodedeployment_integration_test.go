package snapshotter_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/app"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/snapshotter"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// onNode pins a PV to node by the node-local topology key.
func onNode(key, node string) func(*corev1.PersistentVolume) {
	return func(pv *corev1.PersistentVolume) {
		pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: key, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}}}}
	}
}

// snapshotsOf lists the CreateSnapshot requests d got for source volume id.
func snapshotsOf(d *fakedriver.Driver, id string) int {
	n := 0
	for _, r := range fakedriver.RequestsOf[*csi.CreateSnapshotRequest](d) {
		if r.GetSourceVolumeId() == id {
			n++
		}
	}
	return n
}

func deletesOf(d *fakedriver.Driver, id string) int {
	n := 0
	for _, r := range fakedriver.RequestsOf[*csi.DeleteSnapshotRequest](d) {
		if r.GetSnapshotId() == id {
			n++
		}
	}
	return n
}

// csi-snapshotter's --node-deployment with the real snapshot-controller
// v8.7.0 run with --enable-distributed-snapshotting: the controller labels
// each VolumeSnapshotContent managed-by=<the node its source PV's node
// affinity selects>, and each node's csi-hub (--node-deployment, NODE_NAME)
// cuts and deletes only the snapshots of its node, through its own driver.
// A content without the label (its PV has no node affinity) is cut by no
// node, as with the sidecar's label-filtered informer.
func TestNodeDeploymentSnapshots(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{WithSnapshotController: true,
		SnapshotControllerFlags: []string{"--enable-distributed-snapshotting"}})
	e := newEnv(t, c, "nd-snap", fakedriver.Options{})
	const key = "topology.fake.csi-hub.io/node"
	nodeA, nodeB := e.ns+"-a", e.ns+"-b"
	for _, n := range []string{nodeA, nodeB} {
		if _, err := c.CreateNode(e.ctx, n, map[string]string{key: n}); err != nil {
			t.Fatal(err)
		}
	}
	// Node A: the env's driver and hub. Node B: a driver of the same name
	// with its own backend, and its own hub.
	cfgA := testConfig()
	cfgA.NodeName = nodeA
	e.startHub(cfgA)
	drvA, drvB := e.driver, fakedriver.New(fakedriver.Options{Name: e.name})
	sockB := filepath.Join(filepath.Dir(e.socket), "b.sock")
	if err := drvB.Start(sockB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drvB.StopNow)
	cfgB := testConfig()
	cfgB.NodeName = nodeB
	hubtest.Start(t, c.RESTConfig(), hubtest.Options(sockB), func(h *hub.Hub) error {
		d, err := app.SnapshotterDeps(h, cfgB)
		if err != nil {
			return err
		}
		ctrl, err := snapshotter.New(t.Context(), d, cfgB)
		if err != nil {
			return err
		}
		h.Add(ctrl)
		return nil
	})

	volA, err := drvA.AddVolume(fakedriver.Volume{Name: e.ns + "-src-a", CapacityBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	volB, err := drvB.AddVolume(fakedriver.Volume{Name: e.ns + "-src-b", CapacityBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	e.bindPVC("src-a", volA, "1Gi", onNode(key, nodeA))
	e.bindPVC("src-b", volB, "1Gi", onNode(key, nodeB))
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, nil)
	start := time.Now()
	e.snapshot("snap-a", "src-a", class)
	e.snapshot("snap-b", "src-b", class)
	_, contentA := e.waitReady("snap-a", time.Minute)
	_, contentB := e.waitReady("snap-b", time.Minute)
	t.Logf("a snapshot on each node ready in %s", time.Since(start).Round(time.Millisecond))

	for _, x := range []struct {
		node           string
		content        *snapv1.VolumeSnapshotContent
		vol            string
		owner, other   *fakedriver.Driver
		ownerN, otherN string
	}{
		{nodeA, contentA, volA, drvA, drvB, "A", "B"},
		{nodeB, contentB, volB, drvB, drvA, "B", "A"},
	} {
		if got := x.content.Labels[snapshotter.LabelManagedBy]; got != x.node {
			t.Errorf("content %s: %s=%q, want %s (snapshot-controller --enable-distributed-snapshotting)", x.content.Name, snapshotter.LabelManagedBy, got, x.node)
		}
		if snapshotsOf(x.owner, x.vol) != 1 || snapshotsOf(x.other, x.vol) != 0 {
			t.Errorf("snapshot of volume %s on node %s: CreateSnapshot on %s %d, on %s %d; want one, by node %s only",
				x.vol, x.node, x.ownerN, snapshotsOf(x.owner, x.vol), x.otherN, snapshotsOf(x.other, x.vol), x.ownerN)
		}
		if id := ptr.Deref(x.content.Status.SnapshotHandle, ""); id == "" || !backendOf(x.owner, id) {
			t.Errorf("content %s: snapshot handle %q not in node %s's backend", x.content.Name, id, x.ownerN)
		}
	}

	// No node affinity, no label: no node's csi-hub takes the content.
	volC, err := drvA.AddVolume(fakedriver.Volume{Name: e.ns + "-src-c", CapacityBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	e.bindPVC("src-c", volC, "1Gi")
	e.snapshot("snap-c", "src-c", class)
	contentC := e.content(e.boundContent("snap-c"))
	time.Sleep(3 * time.Second)
	if l, ok := contentC.Labels[snapshotter.LabelManagedBy]; ok {
		t.Errorf("content of a PV without node affinity labelled %s=%q", snapshotter.LabelManagedBy, l)
	}
	if n := snapshotsOf(drvA, volC) + snapshotsOf(drvB, volC); n != 0 {
		t.Errorf("%d CreateSnapshot calls for a content managed by no node, want 0", n)
	}

	// Deletion: only the owner deletes.
	handleA := *contentA.Status.SnapshotHandle
	if err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Delete(e.ctx, "snap-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitContentGone(contentA.Name, time.Minute)
	if deletesOf(drvA, handleA) < 1 || deletesOf(drvB, handleA) != 0 || backendOf(drvA, handleA) {
		t.Errorf("DeleteSnapshot of %s: node A %d, node B %d, still in A's backend %v; want node A only",
			handleA, deletesOf(drvA, handleA), deletesOf(drvB, handleA), backendOf(drvA, handleA))
	}
}

// backendOf reports whether d's backend holds snapshot id.
func backendOf(d *fakedriver.Driver, id string) bool {
	for _, s := range d.Snapshots() {
		if s.ID == id {
			return true
		}
	}
	return false
}
