package snapshotter_test

import (
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

const (
	logCRDsAbsent = "Snapshot CRDs are not installed; snapshots are off until they appear"
	logCRDsServed = "Snapshot CRDs are served; starting snapshot informers"
	logStarting   = "Starting snapshotter"
)

// TestCRDsInstalledLater: on a cluster without the snapshot CRDs the hub runs,
// says once that snapshots are off, and starts the snapshotter when the CRDs
// are installed. Needs its own cluster: CRDs cannot be taken away from the
// shared one.
func TestCRDsInstalledLater(t *testing.T) {
	logs := testutil.CaptureKlog(t, 0)
	c := cluster.StartT(t, cluster.Options{})
	e := newEnv(t, c, "crd", fakedriver.Options{})
	cfg := testConfig() // polls discovery every second
	e.startHub(cfg)

	// Several polls go by: the hub keeps running, the message is said once.
	e.poll(30*time.Second, "the hub to say snapshots are off", func() (bool, error) {
		return logs.Count(logCRDsAbsent) > 0, nil
	})
	time.Sleep(4 * cfg.CRDPollInterval)
	if n := logs.Count(logCRDsAbsent); n != 1 {
		t.Errorf("%q logged %d times, want once", logCRDsAbsent, n)
	}
	if logs.Count(logStarting) != 0 {
		t.Fatal("the snapshotter started without the CRDs")
	}

	installed := time.Now()
	if err := c.InstallSnapshotCRDs(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.poll(30*time.Second, "the snapshotter to start", func() (bool, error) {
		return logs.Count(logStarting) == 1, nil
	})
	t.Logf("snapshotter started %s after the CRDs were installed (poll interval %s)",
		time.Since(installed).Round(time.Millisecond), cfg.CRDPollInterval)
	if n := logs.Count(logCRDsServed); n != 1 {
		t.Errorf("%q logged %d times, want once", logCRDsServed, n)
	}

	// And it works: a pre-provisioned content gets its status (there is no
	// snapshot-controller in this cluster, so the content is the whole test).
	id, err := e.driver.AddSnapshot(fakedriver.Snapshot{SourceVolumeID: "v", SizeBytes: 1 << 20, ReadyToUse: true})
	if err != nil {
		t.Fatal(err)
	}
	content := &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-late"},
		Spec: snapv1.VolumeSnapshotContentSpec{
			Driver:            e.name,
			DeletionPolicy:    snapv1.VolumeSnapshotContentRetain,
			Source:            snapv1.VolumeSnapshotContentSource{SnapshotHandle: ptr.To(id)},
			VolumeSnapshotRef: corev1.ObjectReference{Namespace: e.ns, Name: "late"},
		},
	}
	if _, err := e.snaps.SnapshotV1().VolumeSnapshotContents().Create(e.ctx, content, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.poll(30*time.Second, "the late content to be ready", func() (bool, error) {
		got := e.content(content.Name)
		return got.Status != nil && ptr.Deref(got.Status.ReadyToUse, false) && ptr.Deref(got.Status.SnapshotHandle, "") == id, nil
	})
}
