package snapshotter_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/test/cluster"
)

// BenchmarkGroupSnapshot creates VolumeGroupSnapshots of 3 and of 10 PVCs of
// the companion plugin (static PVs of 8Mi volumes with data), one at a time,
// and reports the seconds from creating the VolumeGroupSnapshot to its
// readyToUse (the snapshot-controller's part included: it is what a user
// waits for, member VolumeSnapshots too), the hub's Kubernetes writes per
// group for create and delete, and the seconds until a deleted group's
// content is gone.
//
//	go test ./snapshotter/ -run XXX -bench GroupSnapshot -benchtime 5x
func BenchmarkGroupSnapshot(b *testing.B) {
	for _, n := range []int{3, 10} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) { benchGroup(b, n) })
	}
}

func benchGroup(b *testing.B, members int) {
	e := newBareEnv(b, cluster.Shared(b), "gbench")
	// Deleting a 10-member group takes the snapshot-controller a while.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	b.Cleanup(cancel)
	e.ctx = ctx
	e.name = e.ns + ".block.csi-hub.io"
	d := plugintest.Start(b, plugintest.Options{DriverName: e.name})
	e.socket = d.SocketPath
	e.startHub(testConfig())
	labels := map[string]string{"group": "bench"}
	for i := range members {
		vol, err := d.ControllerClient().CreateVolume(e.ctx, &csi.CreateVolumeRequest{
			Name: fmt.Sprintf("%s-v%d", e.ns, i), CapacityRange: &csi.CapacityRange{RequiredBytes: 8 << 20},
			VolumeCapabilities: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
				AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}})
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("v%d", i)
		e.bindPVC(name, vol.GetVolume().GetVolumeId(), "8Mi")
		if _, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Patch(e.ctx, name, "application/merge-patch+json",
			[]byte(`{"metadata":{"labels":{"group":"bench"}}}`), metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	g := &groupEnv{env: e, d: d}
	class := g.groupClass("delete", snapv1.VolumeSnapshotContentDelete)

	var toReady, toGone time.Duration
	var createWrites, deleteWrites int
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("g%d", i)
		w0 := total(e.hub.Steps.Writes())
		began := time.Now()
		vgs := &groupv1.VolumeGroupSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
			Spec: groupv1.VolumeGroupSnapshotSpec{VolumeGroupSnapshotClassName: ptr.To(class),
				Source: groupv1.VolumeGroupSnapshotSource{Selector: &metav1.LabelSelector{MatchLabels: labels}}}}
		if _, err := e.snaps.GroupsnapshotV1().VolumeGroupSnapshots(e.ns).Create(e.ctx, vgs, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		content := g.waitGroupReady(name, 2*time.Minute)
		toReady += time.Since(began)
		if got := len(content.Status.VolumeSnapshotInfoList); got != members {
			b.Fatalf("group %s has %d members, want %d", name, got, members)
		}
		g.members(name, members)
		w1 := total(e.hub.Steps.Writes())
		createWrites += w1 - w0

		began = time.Now()
		g.deleteGroupSnapshot(name)
		g.waitGroupContentGone(content.Name, 3*time.Minute)
		toGone += time.Since(began)
		deleteWrites += total(e.hub.Steps.Writes()) - w1
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(toReady.Seconds()/n, "s-to-ready/group")
	b.ReportMetric(toGone.Seconds()/n, "s-to-gone/group")
	b.ReportMetric(float64(createWrites)/n, "api-writes-create/group")
	b.ReportMetric(float64(deleteWrites)/n, "api-writes-delete/group")
	list, err := d.ControllerClient().ListSnapshots(e.ctx, &csi.ListSnapshotsRequest{})
	if err != nil || len(list.GetEntries()) != 0 {
		b.Errorf("backend snapshots left after deleting every group: %v %v", list.GetEntries(), err)
	}
}
