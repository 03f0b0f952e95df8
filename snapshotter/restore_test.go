package snapshotter

import (
	"context"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/hub"
)

func restoreFixtures(mutate func(vs *snapv1.VolumeSnapshot, c *snapv1.VolumeSnapshotContent)) []runtime.Object {
	size := resource.MustParse("1Gi")
	vs := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "snap", UID: "vs-uid"},
		Status: &snapv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: ptr.To("content"),
			ReadyToUse: ptr.To(true), RestoreSize: &size},
	}
	content := &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: "content"},
		Spec: snapv1.VolumeSnapshotContentSpec{Driver: testDriver,
			VolumeSnapshotRef: v1.ObjectReference{Namespace: "ns", Name: "snap", UID: "vs-uid"},
			SourceVolumeMode:  ptr.To(v1.PersistentVolumeFilesystem)},
		Status: &snapv1.VolumeSnapshotContentStatus{SnapshotHandle: ptr.To("backend-id"), ReadyToUse: ptr.To(true)},
	}
	if mutate != nil {
		mutate(vs, content)
	}
	return []runtime.Object{vs, content}
}

func restoreClaim(size string, mode v1.PersistentVolumeMode) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "restored"},
		Spec: v1.PersistentVolumeClaimSpec{
			VolumeMode: &mode,
			DataSource: &v1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "snap"},
			Resources:  v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse(size)}},
		},
	}
}

// readyRestoreSource serves objs through synced informers of a fake API.
func readyRestoreSource(t *testing.T, objs ...runtime.Object) *RestoreSource {
	t.Helper()
	client := &switchableDiscovery{Clientset: snapfake.NewSimpleClientset(objs...)}
	client.served.Store(true)
	api := hub.NewSnapshotAPI(client, 0)
	api.PollInterval = 10 * time.Millisecond
	r := newRestoreSource(api)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := api.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return r
}

var restoreClass = &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "sc"}, Provisioner: testDriver}

func TestRestoreSource(t *testing.T) {
	r := readyRestoreSource(t, restoreFixtures(nil)...)
	src, err := r.ContentSource(context.Background(), restoreClaim("2Gi", v1.PersistentVolumeFilesystem), restoreClass)
	if err != nil {
		t.Fatal(err)
	}
	if got := src.GetSnapshot().GetSnapshotId(); got != "backend-id" {
		t.Errorf("snapshot_id = %q, want backend-id", got)
	}
}

func TestRestoreSourceRefusals(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(vs *snapv1.VolumeSnapshot, c *snapv1.VolumeSnapshotContent)
		claim  *v1.PersistentVolumeClaim
		sc     *storagev1.StorageClass
		want   string
	}{
		{"not ready", func(vs *snapv1.VolumeSnapshot, _ *snapv1.VolumeSnapshotContent) { vs.Status.ReadyToUse = ptr.To(false) },
			nil, nil, "not ready to use"},
		{"unbound", func(vs *snapv1.VolumeSnapshot, _ *snapv1.VolumeSnapshotContent) {
			vs.Status.BoundVolumeSnapshotContentName = nil
		},
			nil, nil, "not bound"},
		{"content of another snapshot", func(_ *snapv1.VolumeSnapshot, c *snapv1.VolumeSnapshotContent) {
			c.Spec.VolumeSnapshotRef.UID = "other"
		},
			nil, nil, "bound to another VolumeSnapshot"},
		{"other driver", nil, nil,
			&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "sc2"}, Provisioner: "other.csi.io"}, "belongs to driver " + testDriver},
		{"too small", nil, restoreClaim("512Mi", v1.PersistentVolumeFilesystem), nil, "less than the snapshot's restoreSize"},
		{"mode change", nil, restoreClaim("1Gi", v1.PersistentVolumeBlock), nil, AnnAllowVolumeModeChange},
		{"missing", func(vs *snapv1.VolumeSnapshot, _ *snapv1.VolumeSnapshotContent) { vs.Name = "renamed" },
			nil, nil, "VolumeSnapshot ns/snap not found"},
		{"being deleted", func(vs *snapv1.VolumeSnapshot, _ *snapv1.VolumeSnapshotContent) {
			now := metav1.Now()
			vs.DeletionTimestamp = &now
			vs.Finalizers = []string{"snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"}
		}, nil, nil, "being deleted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := readyRestoreSource(t, restoreFixtures(tc.mutate)...)
			claim, sc := tc.claim, tc.sc
			if claim == nil {
				claim = restoreClaim("1Gi", v1.PersistentVolumeFilesystem)
			}
			if sc == nil {
				sc = restoreClass
			}
			_, err := r.ContentSource(context.Background(), claim, sc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestRestoreModeChangeAllowed(t *testing.T) {
	r := readyRestoreSource(t, restoreFixtures(func(_ *snapv1.VolumeSnapshot, c *snapv1.VolumeSnapshotContent) {
		c.Annotations = map[string]string{AnnAllowVolumeModeChange: "true"}
	})...)
	if _, err := r.ContentSource(context.Background(), restoreClaim("1Gi", v1.PersistentVolumeBlock), restoreClass); err != nil {
		t.Errorf("mode change with the allow annotation: %v", err)
	}
}

func TestRestoreWithoutCRDs(t *testing.T) {
	r := newRestoreSource(hub.NewSnapshotAPI(snapfake.NewSimpleClientset(), 0))
	_, err := r.ContentSource(context.Background(), restoreClaim("1Gi", v1.PersistentVolumeFilesystem), restoreClass)
	if err == nil || !strings.Contains(err.Error(), "not served") {
		t.Errorf("error = %v, want one saying the snapshot API is not served", err)
	}
}
