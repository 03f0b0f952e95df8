package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestSnapshotController proves the CRDs are served and snapshot-controller
// acts: without any VolumeSnapshotClass a VolumeSnapshot gets an error status;
// once a default class for the driver exists, the controller creates the
// VolumeSnapshotContent that a csi-snapshotter would act on.
func TestSnapshotController(t *testing.T) {
	c := Shared(t)
	ctx := context.Background()
	snaps, err := snapclient.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.CreateNamespace(ctx, "snap")
	if err != nil {
		t.Fatal(err)
	}
	sc, handle := ns+"-sc", ns+"-handle"
	if _, err := c.Client.StorageV1().StorageClasses().Create(ctx, storageClass(sc), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, csiPV(ns+"-pv", sc, handle), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc(ns, "source", sc, "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "the source PVC to bind", func(ctx context.Context) (bool, error) {
		claim, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "source", metav1.GetOptions{})
		return err == nil && claim.Status.Phase == corev1.ClaimBound, err
	})

	newSnapshot := func(name string) *snapv1.VolumeSnapshot {
		return &snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To("source")}},
		}
	}
	if _, err := snaps.SnapshotV1().VolumeSnapshots(ns).Create(ctx, newSnapshot("classless"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a VolumeSnapshot (are the CRDs served?): %v", err)
	}
	var message string
	poll(t, time.Minute, "snapshot-controller to report an error for a snapshot without a class", func(ctx context.Context) (bool, error) {
		s, err := snaps.SnapshotV1().VolumeSnapshots(ns).Get(ctx, "classless", metav1.GetOptions{})
		if err != nil || s.Status == nil || s.Status.Error == nil {
			return false, err
		}
		message = ptr.Deref(s.Status.Error.Message, "")
		return true, nil
	})
	t.Logf("snapshot-controller: %s", message)
	if !strings.Contains(strings.ToLower(message), "snapshot class") {
		t.Errorf("error message %q does not mention the snapshot class", message)
	}

	class := &snapv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        ns + "-class",
			Annotations: map[string]string{"snapshot.storage.kubernetes.io/is-default-class": "true"},
		},
		Driver:         testDriver,
		DeletionPolicy: snapv1.VolumeSnapshotContentDelete,
	}
	if _, err := snaps.SnapshotV1().VolumeSnapshotClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer snaps.SnapshotV1().VolumeSnapshotClasses().Delete(ctx, class.Name, metav1.DeleteOptions{}) // other tests may want their own default
	if _, err := snaps.SnapshotV1().VolumeSnapshots(ns).Create(ctx, newSnapshot("with-default"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var content *snapv1.VolumeSnapshotContent
	poll(t, time.Minute, "snapshot-controller to create a VolumeSnapshotContent", func(ctx context.Context) (bool, error) {
		s, err := snaps.SnapshotV1().VolumeSnapshots(ns).Get(ctx, "with-default", metav1.GetOptions{})
		if err != nil || s.Status == nil || s.Status.BoundVolumeSnapshotContentName == nil {
			return false, err
		}
		content, err = snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, *s.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
		return err == nil, err
	})
	if content.Spec.Driver != testDriver || ptr.Deref(content.Spec.Source.VolumeHandle, "") != handle {
		t.Errorf("VolumeSnapshotContent spec = driver %q, volumeHandle %v; want %q, %q",
			content.Spec.Driver, content.Spec.Source.VolumeHandle, testDriver, handle)
	}
}
