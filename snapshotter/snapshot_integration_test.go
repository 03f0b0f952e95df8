package snapshotter_test

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/snapshotter"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// TestCreateReadyDelete walks the dynamic protocol end to end: VolumeSnapshot
// -> (snapshot-controller) content -> CreateSnapshot -> content status ->
// (snapshot-controller) VolumeSnapshot readyToUse; then deleting the
// VolumeSnapshot with deletionPolicy Delete -> DeleteSnapshot -> the backend
// snapshot and the content are gone.
func TestCreateReadyDelete(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "create", fakedriver.Options{})
	cfg := testConfig()
	cfg.ExtraCreateMetadata = true
	e.startHub(cfg)
	handle := e.sourcePVC("data")
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, map[string]string{"tier": "gold"})

	began := time.Now()
	e.snapshot("snap", "data", class)
	vs, content := e.waitReady("snap", time.Minute)
	t.Logf("VolumeSnapshot created -> readyToUse in %s", time.Since(began).Round(time.Millisecond))

	st := content.Status
	if st.SnapshotHandle == nil || st.CreationTime == nil || ptr.Deref(st.RestoreSize, 0) != 1<<30 || st.Error != nil {
		t.Errorf("content status = %+v", st)
	}
	if _, ok := content.Annotations[snapshotter.AnnBeingCreated]; ok {
		t.Error("being-created annotation left on a created content")
	}
	if got := vs.Status.RestoreSize; got == nil || got.Value() != 1<<30 {
		t.Errorf("VolumeSnapshot restoreSize = %v, want 1Gi", got)
	}
	backend := e.driver.Snapshots()
	if len(backend) != 1 {
		t.Fatalf("backend snapshots = %+v, want 1", backend)
	}
	snap := backend[0]
	if snap.ID != *st.SnapshotHandle || snap.Name != "snapshot-"+string(vs.UID) || snap.SourceVolumeID != handle {
		t.Errorf("backend snapshot %+v; want ID %s, name snapshot-%s, source %s", snap, *st.SnapshotHandle, vs.UID, handle)
	}
	wantParams := map[string]string{"tier": "gold",
		snapshotter.ParamVolumeSnapshotName: "snap", snapshotter.ParamVolumeSnapshotNamespace: e.ns,
		snapshotter.ParamVolumeSnapshotContentName: content.Name}
	if !maps.Equal(snap.Parameters, wantParams) {
		t.Errorf("CreateSnapshot parameters = %v, want %v", snap.Parameters, wantParams)
	}
	checkSteps(t, e, content.Name)

	if err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Delete(e.ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	e.waitContentGone(content.Name, time.Minute)
	t.Logf("VolumeSnapshot deleted -> content gone in %s", time.Since(began).Round(time.Millisecond))
	if e.backendHas(snap.ID) {
		t.Error("backend snapshot still exists after deleting a VolumeSnapshot with deletionPolicy Delete")
	}
	if req, ok := fakedriver.LastRequest[*csi.DeleteSnapshotRequest](e.driver); !ok || req.SnapshotId != snap.ID {
		t.Errorf("DeleteSnapshot request = %v, want snapshot %s", req, snap.ID)
	}
}

// checkSteps: the hub's step record attributes the trigger, the CSI call and
// the status write to the content.
func checkSteps(t *testing.T, e *env, content string) {
	t.Helper()
	object := "VolumeSnapshotContent " + content
	var trigger, call, write bool
	for _, s := range e.hub.Steps.Recent(0) {
		if s.Object != object || s.Controller != "snapshotter" {
			continue
		}
		switch {
		case s.Kind == steps.Trigger:
			trigger = true
		case s.Kind == steps.CSI && s.Action == "CreateSnapshot" && s.Result == "OK":
			call = true
		case s.Kind == steps.Write && s.Action == "patch volumesnapshotcontents/status":
			write = true
		}
	}
	if !trigger || !call || !write {
		t.Errorf("steps of %s: trigger %v, CreateSnapshot %v, status patch %v; want all recorded", object, trigger, call, write)
	}
}

// TestRetain: with deletionPolicy Retain the backend snapshot outlives both
// the VolumeSnapshot and the content, and nothing is left stuck.
func TestRetain(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "retain", fakedriver.Options{})
	e.startHub(testConfig())
	e.sourcePVC("data")
	class := e.class("retain", snapv1.VolumeSnapshotContentRetain, nil)
	e.snapshot("snap", "data", class)
	_, content := e.waitReady("snap", time.Minute)
	id := *content.Status.SnapshotHandle

	if err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Delete(e.ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.poll(time.Minute, "the VolumeSnapshot to go", func() (bool, error) {
		_, err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Get(e.ctx, "snap", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if got := e.content(content.Name); got.DeletionTimestamp != nil || ptr.Deref(got.Status.SnapshotHandle, "") != id {
		t.Errorf("retained content: deletionTimestamp %v, status %+v", got.DeletionTimestamp, got.Status)
	}
	if err := e.snaps.SnapshotV1().VolumeSnapshotContents().Delete(e.ctx, content.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitContentGone(content.Name, time.Minute)
	if !e.backendHas(id) {
		t.Error("backend snapshot deleted despite deletionPolicy Retain")
	}
	if n := e.driver.Calls("DeleteSnapshot"); n != 0 {
		t.Errorf("DeleteSnapshot called %d times with deletionPolicy Retain", n)
	}
}

// TestPollsUntilReady: a snapshot that is cut at once but becomes ready only
// later is polled (CreateSnapshot again, same name) until it is.
func TestPollsUntilReady(t *testing.T) {
	const polls = 3
	e := newEnv(t, cluster.Shared(t), "poll", fakedriver.Options{SnapshotReadyAfterPolls: polls})
	e.startHub(testConfig())
	e.sourcePVC("data")
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, nil)
	vs := e.snapshot("snap", "data", class)

	began := time.Now()
	_, content := e.waitReady("snap", time.Minute)
	t.Logf("ready after polling for %s", time.Since(began).Round(time.Millisecond))

	reqs := fakedriver.RequestsOf[*csi.CreateSnapshotRequest](e.driver)
	if len(reqs) < 1+polls {
		t.Errorf("CreateSnapshot calls = %d, want at least %d (create + %d polls)", len(reqs), 1+polls, polls)
	}
	for _, r := range reqs {
		if r.Name != "snapshot-"+string(vs.UID) {
			t.Errorf("poll used name %q", r.Name)
		}
	}
	snaps := e.driver.Snapshots()
	if len(snaps) != 1 || snaps[0].ID != *content.Status.SnapshotHandle {
		t.Fatalf("backend snapshots = %+v; polling must not cut new ones", snaps)
	}
	if snaps[0].Polls < polls {
		t.Errorf("backend saw %d polls, want >= %d", snaps[0].Polls, polls)
	}
}

// TestPreProvisionedLifecycle: a content naming an existing backend snapshot
// gets its status from ListSnapshots, binds to its VolumeSnapshot, and
// (policy Delete) takes the backend snapshot with it. (TestPreProvisioned is
// the unit test of the sync.)
func TestPreProvisionedLifecycle(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "pre", fakedriver.Options{})
	e.startHub(testConfig())
	id, err := e.driver.AddSnapshot(fakedriver.Snapshot{SourceVolumeID: "elsewhere", SizeBytes: 2 << 30, ReadyToUse: true})
	if err != nil {
		t.Fatal(err)
	}
	contentName := e.ns + "-pre"
	content := &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: contentName},
		Spec: snapv1.VolumeSnapshotContentSpec{
			Driver:            e.name,
			DeletionPolicy:    snapv1.VolumeSnapshotContentDelete,
			Source:            snapv1.VolumeSnapshotContentSource{SnapshotHandle: ptr.To(id)},
			VolumeSnapshotRef: corev1.ObjectReference{Namespace: e.ns, Name: "pre"},
		},
	}
	if _, err := e.snaps.SnapshotV1().VolumeSnapshotContents().Create(e.ctx, content, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vs := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "pre"},
		Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{VolumeSnapshotContentName: ptr.To(contentName)}},
	}
	if _, err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Create(e.ctx, vs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, gotContent := e.waitReady("pre", time.Minute)
	if st := gotContent.Status; ptr.Deref(st.SnapshotHandle, "") != id || ptr.Deref(st.RestoreSize, 0) != 2<<30 {
		t.Errorf("content status = %+v, want handle %s and restoreSize 2Gi", st, id)
	}
	if got.Status.RestoreSize == nil || got.Status.RestoreSize.Value() != 2<<30 {
		t.Errorf("VolumeSnapshot restoreSize = %v", got.Status.RestoreSize)
	}
	if e.driver.Calls("ListSnapshots") == 0 || e.driver.Calls("CreateSnapshot") != 0 {
		t.Errorf("calls: ListSnapshots %d, CreateSnapshot %d; want ListSnapshots only",
			e.driver.Calls("ListSnapshots"), e.driver.Calls("CreateSnapshot"))
	}

	if err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Delete(e.ctx, "pre", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitContentGone(contentName, time.Minute)
	if e.backendHas(id) {
		t.Error("pre-provisioned backend snapshot kept despite deletionPolicy Delete")
	}
}

// TestCreateFailure: a driver error leaves a Warning event and status.error
// on the content (propagated to the VolumeSnapshot), and deleting the
// failed VolumeSnapshot leaves nothing stuck.
func TestCreateFailure(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "fail", fakedriver.Options{})
	e.driver.InjectError("CreateSnapshot", codes.InvalidArgument, `parameters.tier: unknown tier "platinum"`, fakedriver.Forever)
	e.startHub(testConfig())
	e.sourcePVC("data")
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, map[string]string{"tier": "platinum"})
	e.snapshot("snap", "data", class)
	contentName := e.boundContent("snap")

	e.poll(time.Minute, "the content to report the error", func() (bool, error) {
		c := e.content(contentName)
		return c.Status != nil && c.Status.Error != nil, nil
	})
	c := e.content(contentName)
	msg := ptr.Deref(c.Status.Error.Message, "")
	if !strings.Contains(msg, "unknown tier") || ptr.Deref(c.Status.ReadyToUse, true) {
		t.Errorf("content status = readyToUse %v, error %q", c.Status.ReadyToUse, msg)
	}
	if _, ok := c.Annotations[snapshotter.AnnBeingCreated]; ok {
		t.Error("being-created annotation left after a final error: deletion would hang")
	}
	e.poll(30*time.Second, "a Warning event on the content", func() (bool, error) {
		return hasPrefix(e.events(contentName), "Warning SnapshotCreationFailed: Failed to create snapshot"), nil
	})
	e.poll(time.Minute, "the VolumeSnapshot to show the error", func() (bool, error) {
		vs := e.getSnapshot("snap")
		return vs.Status != nil && vs.Status.Error != nil && strings.Contains(ptr.Deref(vs.Status.Error.Message, ""), "unknown tier"), nil
	})

	if err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Delete(e.ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitContentGone(contentName, time.Minute)
	e.poll(time.Minute, "the VolumeSnapshot to go", func() (bool, error) {
		_, err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Get(e.ctx, "snap", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if n := len(e.driver.Snapshots()); n != 0 {
		t.Errorf("backend has %d snapshots after a failed creation", n)
	}
}

// TestCreateRecovers: transient failures are retried and the error is
// cleared once the snapshot is ready.
func TestCreateRecovers(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "recover", fakedriver.Options{})
	e.driver.InjectError("CreateSnapshot", codes.Internal, "backend busy", 2)
	e.startHub(testConfig())
	e.sourcePVC("data")
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, nil)
	e.snapshot("snap", "data", class)
	_, content := e.waitReady("snap", time.Minute)
	if content.Status.Error != nil {
		t.Errorf("error kept after success: %+v", content.Status.Error)
	}
	if n := e.driver.Calls("CreateSnapshot"); n < 3 {
		t.Errorf("CreateSnapshot calls = %d, want 2 failures + 1 success", n)
	}
	if !hasPrefix(e.events(content.Name), "Warning SnapshotCreationFailed") {
		t.Errorf("no Warning event for the failures: %v", e.events(content.Name))
	}
}

// TestDeleteFailureRetried: DeleteSnapshot failures leave a Warning event and
// keep the content (and so the record of the backend snapshot) until a retry
// succeeds; nothing is leaked or stuck afterwards.
func TestDeleteFailureRetried(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "delfail", fakedriver.Options{})
	e.startHub(testConfig())
	e.sourcePVC("data")
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, nil)
	e.snapshot("snap", "data", class)
	_, content := e.waitReady("snap", time.Minute)
	id := *content.Status.SnapshotHandle

	e.driver.InjectError("DeleteSnapshot", codes.FailedPrecondition, "snapshot has dependent volumes", 2)
	if err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Delete(e.ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.poll(30*time.Second, "a SnapshotDeleteError event", func() (bool, error) {
		return hasPrefix(e.events(content.Name), "Warning SnapshotDeleteError: Failed to delete snapshot"), nil
	})
	e.waitContentGone(content.Name, time.Minute)
	if e.backendHas(id) {
		t.Error("backend snapshot left after the retried deletion")
	}
	if n := e.driver.Calls("DeleteSnapshot"); n < 3 {
		t.Errorf("DeleteSnapshot calls = %d, want 2 failures + 1 success", n)
	}
}
