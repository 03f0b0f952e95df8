package snapshotter_test

import (
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/snapshotter"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// TestDeleteWhileCreating: a VolumeSnapshot deleted while its CreateSnapshot
// is still running in the backend must not leak the snapshot that call cuts:
// the being-created annotation holds the deletion until the call returns,
// then DeleteSnapshot removes it.
func TestDeleteWhileCreating(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "inflight", fakedriver.Options{})
	gate := e.driver.Gate("CreateSnapshot")
	defer gate.Release()
	e.startHub(testConfig())
	e.sourcePVC("data")
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, nil)
	e.snapshot("snap", "data", class)
	if err := gate.WaitArrived(e.ctx); err != nil {
		t.Fatal(err)
	}
	contentName := e.boundContent("snap")
	if _, ok := e.content(contentName).Annotations[snapshotter.AnnBeingCreated]; !ok {
		t.Fatal("no being-created annotation while CreateSnapshot is in flight")
	}

	if err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Delete(e.ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // time for a careless controller to drop the content
	if _, err := e.snaps.SnapshotV1().VolumeSnapshotContents().Get(e.ctx, contentName, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Fatal("content deleted while CreateSnapshot was in flight: its snapshot would leak")
	}
	gate.Release()
	released := time.Now()
	e.waitContentGone(contentName, time.Minute)
	// Mostly the snapshot-controller's retry backoff (up to 10s a step here).
	t.Logf("content gone %s after CreateSnapshot returned", time.Since(released).Round(time.Millisecond))
	if snaps := e.driver.Snapshots(); len(snaps) != 0 {
		t.Errorf("backend snapshots after the deletion: %+v (leaked)", snaps)
	}
	if e.driver.Calls("DeleteSnapshot") == 0 {
		t.Error("DeleteSnapshot never called")
	}
}

// TestRestartDuringCreate: the hub stops while CreateSnapshot is in flight; a
// new hub finishes the job with the same snapshot name, so the backend ends
// with exactly one snapshot.
func TestRestartDuringCreate(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "restart", fakedriver.Options{})
	gate := e.driver.Gate("CreateSnapshot")
	defer gate.Release()
	stop := e.startHub(testConfig())
	e.sourcePVC("data")
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, nil)
	e.snapshot("snap", "data", class)
	if err := gate.WaitArrived(e.ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	contentName := e.boundContent("snap")
	if _, ok := e.content(contentName).Annotations[snapshotter.AnnBeingCreated]; !ok {
		t.Fatal("being-created annotation dropped when the call was cut off: the backend may still be cutting the snapshot")
	}

	e.startHub(testConfig())
	e.poll(30*time.Second, "the new hub's CreateSnapshot to reach the driver", func() (bool, error) {
		return gate.Held() >= 2, nil
	})
	gate.Release()
	_, content := e.waitReady("snap", time.Minute)
	snaps := e.driver.Snapshots()
	if len(snaps) != 1 || snaps[0].ID != *content.Status.SnapshotHandle {
		t.Errorf("backend snapshots = %+v, want exactly the content's one", snaps)
	}
	if _, ok := content.Annotations[snapshotter.AnnBeingCreated]; ok {
		t.Error("being-created annotation left after the restarted creation finished")
	}
}
