package integration

import (
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/provisioner"
	"github.com/csi-hub/csi-hub/snapshotter"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

var _ provisioner.DataSource = (*snapshotter.RestoreSource)(nil)

// TestRestoreWithProvisioner: one hub runs the provisioner and the
// snapshotter on the same shared snapshot API; a PVC provisioned from a
// VolumeSnapshot gets a volume created from the backend snapshot.
func TestRestoreWithProvisioner(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "restore", fakedriver.Options{})
	e.startHub(testConfig(), func(h *hub.Hub) error {
		p, err := provisioner.New(h, provisioner.DefaultConfig())
		if err != nil {
			return err
		}
		rs, err := snapshotter.NewRestoreSource(h)
		if err != nil {
			return err
		}
		p.SetDataSource(provisioner.KindVolumeSnapshot, rs)
		h.Add(p)
		return nil
	})
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-sc"}, Provisioner: e.name,
		ReclaimPolicy: ptr.To(corev1.PersistentVolumeReclaimDelete)}
	if _, err := e.c.Client.StorageV1().StorageClasses().Create(e.ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Client.StorageV1().StorageClasses().Delete(e.ctx, sc.Name, metav1.DeleteOptions{}) })

	e.claim("data", sc.Name, nil)
	e.waitBound("data")
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, nil)
	e.snapshot("snap", "data", class)
	_, content := e.waitReady("snap", time.Minute)

	began := time.Now()
	e.claim("restored", sc.Name, &corev1.TypedLocalObjectReference{
		APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "snap"})
	pv := e.waitBound("restored")
	t.Logf("restored PVC bound in %s", time.Since(began).Round(time.Millisecond))
	vol, ok := e.driver.Volume(pv.Spec.CSI.VolumeHandle)
	if !ok || vol.SourceSnapshotID != *content.Status.SnapshotHandle {
		t.Errorf("restored volume %+v, want one created from snapshot %s", vol, *content.Status.SnapshotHandle)
	}
}

func (e *env) claim(name, class string, source *corev1.TypedLocalObjectReference) {
	e.t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(class),
			DataSource:       source,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if _, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx, pvc, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) waitBound(name string) *corev1.PersistentVolume {
	e.t.Helper()
	var pvName string
	e.poll(time.Minute, "PVC "+name+" to be bound", func() (bool, error) {
		c, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil || c.Status.Phase != corev1.ClaimBound {
			return false, err
		}
		pvName = c.Spec.VolumeName
		return true, nil
	})
	pv, err := e.c.Client.CoreV1().PersistentVolumes().Get(e.ctx, pvName, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pv
}
