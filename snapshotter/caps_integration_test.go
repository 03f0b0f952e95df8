package snapshotter_test

import (
	"context"
	"strings"
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

// TestDriverWithoutSnapshots: the snapshotter's dependencies refuse a driver without
// CREATE_DELETE_SNAPSHOT with an error naming the capability.
func TestDriverWithoutSnapshots(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "nosnap", fakedriver.Options{ControllerCapabilities: []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := hub.New(ctx, hubtest.Options(e.socket), e.c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.SnapshotterDeps(h, snapshotter.DefaultConfig())
	if err == nil || !strings.Contains(err.Error(), "CREATE_DELETE_SNAPSHOT") {
		t.Errorf("SnapshotterDeps = %v, want an error naming CREATE_DELETE_SNAPSHOT", err)
	}
}

// TestPreProvisionedWithoutListSnapshots: a driver that cannot list snapshots
// cannot be asked about a pre-provisioned one; the content is taken as ready
// (as the sidecar does) without any ListSnapshots call.
func TestPreProvisionedWithoutListSnapshots(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "nolist", fakedriver.Options{ControllerCapabilities: []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME, csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT}})
	e.startHub(testConfig())
	content := &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-pre"},
		Spec: snapv1.VolumeSnapshotContentSpec{
			Driver: e.name, DeletionPolicy: snapv1.VolumeSnapshotContentRetain,
			Source:            snapv1.VolumeSnapshotContentSource{SnapshotHandle: ptr.To("some-backend-id")},
			VolumeSnapshotRef: corev1.ObjectReference{Namespace: e.ns, Name: "pre"},
		},
	}
	if _, err := e.snaps.SnapshotV1().VolumeSnapshotContents().Create(e.ctx, content, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.poll(30*time.Second, "the content to be ready", func() (bool, error) {
		got := e.content(content.Name)
		return got.Status != nil && ptr.Deref(got.Status.ReadyToUse, false) &&
			ptr.Deref(got.Status.SnapshotHandle, "") == "some-backend-id", nil
	})
	if n := e.driver.Calls("ListSnapshots"); n != 0 {
		t.Errorf("ListSnapshots called %d times on a driver without LIST_SNAPSHOTS", n)
	}
}
