package snapshotter

import (
	"maps"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/steps"
)

func TestCreateReadyAtOnce(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ExtraCreateMetadata = true
	content := testContent("content-1")
	content.Annotations = map[string]string{AnnDeletionSecretName: "creds", AnnDeletionSecretNamespace: "storage"}
	e := newUnitEnv(t, cfg, content, testClass(map[string]string{"tier": "gold",
		ParamSnapshotterSecretName: "creds", ParamSnapshotterSecretNamespace: "storage"}),
		&v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "storage"}, Data: map[string][]byte{"key": []byte("s3cret")}})
	e.csi.ready = true

	if err := e.syncOnce(t, "content-1"); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if len(e.csi.creates) != 1 {
		t.Fatalf("CreateSnapshot calls = %d, want 1", len(e.csi.creates))
	}
	req := e.csi.creates[0]
	if req.Name != "snapshot-uid-a" || req.SourceVolumeId != "vol-1" {
		t.Errorf("request name/source = %q/%q", req.Name, req.SourceVolumeId)
	}
	wantParams := map[string]string{"tier": "gold", ParamVolumeSnapshotName: "snap-a",
		ParamVolumeSnapshotNamespace: "ns-a", ParamVolumeSnapshotContentName: "content-1"}
	if !maps.Equal(req.Parameters, wantParams) {
		t.Errorf("parameters = %v, want %v", req.Parameters, wantParams)
	}
	if req.Secrets["key"] != "s3cret" {
		t.Errorf("secrets = %v, want the secret's data", maps.Keys(req.Secrets))
	}
	got := e.get(t, "content-1")
	st := got.Status
	if st == nil || st.SnapshotHandle == nil || *st.SnapshotHandle != "id-snapshot-uid-a" ||
		st.ReadyToUse == nil || !*st.ReadyToUse || st.RestoreSize == nil || *st.RestoreSize != 1<<30 ||
		st.CreationTime == nil || *st.CreationTime != time.Unix(1700000000, 5).UnixNano() {
		t.Errorf("status = %+v", st)
	}
	if _, ok := got.Annotations[AnnBeingCreated]; ok {
		t.Error("being-created annotation left on a created snapshot")
	}
	// Ready: a further sync makes no CSI call.
	if err := e.syncOnce(t, "content-1"); err != nil || len(e.csi.creates) != 1 {
		t.Errorf("sync of a ready content: err %v, CreateSnapshot calls %d", err, len(e.csi.creates))
	}
	// The step record tells the story: trigger, then the writes.
	var kinds []steps.Kind
	for _, s := range e.steps.Recent(0) {
		kinds = append(kinds, s.Kind)
	}
	if len(kinds) == 0 || kinds[0] != steps.Trigger {
		t.Errorf("steps = %v, want a trigger first", kinds)
	}
}

func TestCreatePollsUntilReady(t *testing.T) {
	e := newUnitEnv(t, DefaultConfig(), testContent("c"), testClass(nil))
	e.csi.ready = false
	var delays []time.Duration
	for range 3 {
		err := e.syncOnce(t, "c")
		d, ok := requeueDelay(err)
		if !ok {
			t.Fatalf("sync of an unready snapshot returned %v, want a requeue", err)
		}
		delays = append(delays, d)
	}
	if delays[0] != time.Second || delays[1] != 2*time.Second || delays[2] != 4*time.Second {
		t.Errorf("poll delays = %v, want 1s 2s 4s", delays)
	}
	if st := e.get(t, "c").Status; st == nil || st.ReadyToUse == nil || *st.ReadyToUse {
		t.Errorf("status before ready = %+v", st)
	}
	e.csi.ready = true
	if err := e.syncOnce(t, "c"); err != nil {
		t.Fatalf("sync when ready: %v", err)
	}
	if st := e.get(t, "c").Status; !*st.ReadyToUse {
		t.Errorf("status after ready = %+v", st)
	}
	// Every poll asked CreateSnapshot with the same name: idempotent polling.
	for _, r := range e.csi.creates {
		if r.Name != "snapshot-uid-a" {
			t.Errorf("poll used name %q", r.Name)
		}
	}
	if len(e.csi.creates) != 4 {
		t.Errorf("CreateSnapshot calls = %d, want 4", len(e.csi.creates))
	}
	// Writes: mark, status, unmark for the creation, then only the status
	// change to ready; unchanged polls write nothing.
	patches := 0
	for _, a := range e.snap.Actions() {
		if a.GetVerb() == "patch" {
			patches++
		}
	}
	if patches != 4 {
		t.Errorf("API patches = %d, want 4 (polls must not re-mark the content)", patches)
	}
}

func TestCreateFinalErrorLeavesNoAnnotation(t *testing.T) {
	e := newUnitEnv(t, DefaultConfig(), testContent("c"), testClass(nil))
	e.csi.createErr = status.Error(codes.InvalidArgument, "parameters.tier: unknown tier")
	err := e.syncOnce(t, "c")
	if err == nil {
		t.Fatal("sync succeeded despite the driver's error")
	}
	got := e.get(t, "c")
	if _, ok := got.Annotations[AnnBeingCreated]; ok {
		t.Error("being-created annotation left after a final error")
	}
	if got.Status == nil || got.Status.Error == nil || got.Status.Error.Message == nil ||
		!strings.Contains(*got.Status.Error.Message, "unknown tier") || *got.Status.ReadyToUse {
		t.Errorf("status = %+v, want readyToUse false and the driver's message", got.Status)
	}
	if evs := e.drainEvents(); !hasEvent(evs, "Warning SnapshotCreationFailed Failed to create snapshot") {
		t.Errorf("events = %v", evs)
	}
	// A retry of a content that now has a status fails under the sidecar's
	// check-and-update reason; the same error after that is not re-reported.
	_ = e.syncOnce(t, "c")
	if evs := e.drainEvents(); len(evs) != 1 || !hasEvent(evs, "Warning SnapshotContentCheckandUpdateFailed Failed to check and update snapshot content") {
		t.Errorf("events of the retry = %v", evs)
	}
	_ = e.syncOnce(t, "c")
	if evs := e.drainEvents(); len(evs) != 0 {
		t.Errorf("repeated error emitted events again: %v", evs)
	}
	if n := len(e.csi.creates); n != 3 {
		t.Errorf("CreateSnapshot calls = %d, want 3 (each retry asks the driver)", n)
	}
}

func TestCreateTimeoutKeepsAnnotation(t *testing.T) {
	e := newUnitEnv(t, DefaultConfig(), testContent("c"), testClass(nil))
	e.csi.createErr = status.Error(codes.DeadlineExceeded, "slow backend")
	if err := e.syncOnce(t, "c"); err == nil {
		t.Fatal("sync succeeded despite a timeout")
	}
	// The backend may still be cutting the snapshot: deletion must wait.
	if _, ok := e.get(t, "c").Annotations[AnnBeingCreated]; !ok {
		t.Error("being-created annotation removed after a timeout; a late snapshot could leak")
	}
	e.csi.createErr = nil
	e.csi.ready = true
	if err := e.syncOnce(t, "c"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	got := e.get(t, "c")
	if _, ok := got.Annotations[AnnBeingCreated]; ok || !contentReady(got) || got.Status.Error != nil {
		t.Errorf("after retry: annotations %v status %+v", got.Annotations, got.Status)
	}
}

func TestCreateInputErrorsSendNothing(t *testing.T) {
	noClass := testContent("no-class")
	noClass.Spec.VolumeSnapshotClassName = nil
	noUID := testContent("no-uid")
	noUID.Spec.VolumeSnapshotRef.UID = ""
	badSecret := testContent("bad-secret")
	badSecret.Annotations = map[string]string{AnnDeletionSecretName: "gone", AnnDeletionSecretNamespace: "storage"}
	e := newUnitEnv(t, DefaultConfig(), noClass, noUID, badSecret, testClass(nil))
	for _, name := range []string{"no-class", "no-uid", "bad-secret"} {
		if err := e.syncOnce(t, name); err == nil {
			t.Errorf("%s: sync succeeded", name)
		}
		got := e.get(t, name)
		if _, ok := got.Annotations[AnnBeingCreated]; ok {
			t.Errorf("%s: being-created annotation set although no call was sent", name)
		}
		if got.Status == nil || got.Status.Error == nil {
			t.Errorf("%s: no error in status", name)
		}
	}
	if len(e.csi.creates) != 0 {
		t.Errorf("CreateSnapshot called %d times with bad input", len(e.csi.creates))
	}
}

func TestPreProvisioned(t *testing.T) {
	handle := "backend-snap-7"
	content := testContent("pre")
	content.Spec.Source = snapv1.VolumeSnapshotContentSource{SnapshotHandle: &handle}
	content.Spec.VolumeSnapshotClassName = nil
	missingHandle := "nope"
	missing := testContent("missing")
	missing.Spec.Source = snapv1.VolumeSnapshotContentSource{SnapshotHandle: &missingHandle}
	missing.Spec.VolumeSnapshotClassName = nil
	e := newUnitEnv(t, DefaultConfig(), content, missing)
	e.csi.known[handle] = true
	e.csi.ready = true

	if err := e.syncOnce(t, "pre"); err != nil {
		t.Fatalf("sync: %v", err)
	}
	st := e.get(t, "pre").Status
	if st == nil || *st.SnapshotHandle != handle || !*st.ReadyToUse || *st.RestoreSize != 2<<30 ||
		*st.CreationTime != time.Unix(1600000000, 0).UnixNano() {
		t.Errorf("status = %+v", st)
	}
	if len(e.csi.creates) != 0 || len(e.csi.lists) != 1 || e.csi.lists[0].SnapshotId != handle {
		t.Errorf("calls: creates %d lists %v", len(e.csi.creates), e.csi.lists)
	}

	if err := e.syncOnce(t, "missing"); err == nil {
		t.Error("a snapshot the driver does not know was accepted")
	}
	if evs := e.drainEvents(); !hasEvent(evs, "Warning SnapshotContentCheckandUpdateFailed") {
		t.Errorf("events = %v", evs)
	}
}

func deleting(c *snapv1.VolumeSnapshotContent, policy snapv1.DeletionPolicy, handle string) *snapv1.VolumeSnapshotContent {
	now := metav1.Now()
	c.DeletionTimestamp = &now
	c.Finalizers = []string{ContentFinalizer, "other/keep"}
	c.Spec.DeletionPolicy = policy
	c.Annotations = map[string]string{AnnBeingDeleted: "yes", AnnDeletionSecretName: "creds", AnnDeletionSecretNamespace: "storage"}
	ready := true
	c.Status = &snapv1.VolumeSnapshotContentStatus{SnapshotHandle: &handle, ReadyToUse: &ready}
	return c
}

func TestDeletePolicies(t *testing.T) {
	secret := &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "storage"}, Data: map[string][]byte{"k": []byte("v")}}
	e := newUnitEnv(t, DefaultConfig(),
		deleting(testContent("del"), snapv1.VolumeSnapshotContentDelete, "h-del"),
		deleting(testContent("ret"), snapv1.VolumeSnapshotContentRetain, "h-ret"),
		testClass(nil), secret)

	if err := e.syncOnce(t, "del"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if len(e.csi.deletes) != 1 || e.csi.deletes[0].SnapshotId != "h-del" || e.csi.deletes[0].Secrets["k"] != "v" {
		t.Fatalf("DeleteSnapshot calls = %v", e.csi.deletes)
	}
	got := e.get(t, "del")
	if got.Status != nil && got.Status.SnapshotHandle != nil {
		t.Errorf("snapshot handle kept after DeleteSnapshot: %+v", got.Status)
	}
	if len(got.Finalizers) != 1 || got.Finalizers[0] != "other/keep" {
		t.Errorf("finalizers = %v, want only other/keep", got.Finalizers)
	}

	if err := e.syncOnce(t, "ret"); err != nil {
		t.Fatalf("retain: %v", err)
	}
	if len(e.csi.deletes) != 1 {
		t.Errorf("Retain called DeleteSnapshot")
	}
	if got := e.get(t, "ret"); len(got.Finalizers) != 1 || got.Status.SnapshotHandle == nil {
		t.Errorf("retain: finalizers %v status %+v", got.Finalizers, got.Status)
	}
}

func TestDeleteErrorKeepsFinalizer(t *testing.T) {
	e := newUnitEnv(t, DefaultConfig(), deleting(testContent("del"), snapv1.VolumeSnapshotContentDelete, "h"),
		&v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "storage"}})
	e.csi.deleteErr = status.Error(codes.FailedPrecondition, "snapshot in use")
	if err := e.syncOnce(t, "del"); err == nil {
		t.Fatal("sync succeeded despite DeleteSnapshot failing")
	}
	if got := e.get(t, "del"); len(got.Finalizers) != 2 || *got.Status.SnapshotHandle != "h" {
		t.Errorf("after a failed delete: finalizers %v status %+v; the backend snapshot would be leaked", got.Finalizers, got.Status)
	}
	if evs := e.drainEvents(); !hasEvent(evs, "Warning SnapshotDeleteError Failed to delete snapshot") {
		t.Errorf("events = %v", evs)
	}
	e.csi.deleteErr = nil
	if err := e.syncOnce(t, "del"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := e.get(t, "del"); len(got.Finalizers) != 1 {
		t.Errorf("finalizers after retry = %v", got.Finalizers)
	}
}

func TestDeleteWaitsWhileBeingCreated(t *testing.T) {
	c := deleting(testContent("c"), snapv1.VolumeSnapshotContentDelete, "h")
	c.Annotations[AnnBeingCreated] = "yes"
	if shouldDelete(c) {
		t.Error("shouldDelete while a CreateSnapshot may be in flight")
	}
	delete(c.Annotations, AnnBeingCreated)
	if !shouldDelete(c) {
		t.Error("shouldDelete false with the being-deleted annotation")
	}
	delete(c.Annotations, AnnBeingDeleted)
	if shouldDelete(c) {
		t.Error("shouldDelete without the being-deleted annotation")
	}
	h := "x"
	c.Spec.Source = snapv1.VolumeSnapshotContentSource{SnapshotHandle: &h}
	c.Spec.VolumeSnapshotRef.UID = ""
	if !shouldDelete(c) {
		t.Error("an unbound pre-provisioned content being deleted must be released")
	}
}

func TestForeignContentIgnored(t *testing.T) {
	c := testContent("other")
	c.Spec.Driver = "someone.else"
	e := newUnitEnv(t, DefaultConfig(), c, testClass(nil))
	if err := e.syncOnce(t, "other"); err != nil {
		t.Fatal(err)
	}
	if len(e.csi.creates) != 0 || e.get(t, "other").Status != nil {
		t.Error("acted on another driver's content")
	}
}

func TestChangeNeedsSync(t *testing.T) {
	old := testContent("c")
	old.ResourceVersion = "1"
	mk := func(f func(*snapv1.VolumeSnapshotContent)) *snapv1.VolumeSnapshotContent {
		n := old.DeepCopy()
		n.ResourceVersion = "2"
		f(n)
		return n
	}
	ready := true
	cases := map[string]struct {
		cur  *snapv1.VolumeSnapshotContent
		want bool
	}{
		"resync":                   {old.DeepCopy(), true},
		"own annotation":           {mk(func(n *snapv1.VolumeSnapshotContent) { n.Annotations = map[string]string{AnnBeingCreated: "yes"} }), false},
		"being-deleted annotation": {mk(func(n *snapv1.VolumeSnapshotContent) { n.Annotations = map[string]string{AnnBeingDeleted: "yes"} }), true},
		"finalizer":                {mk(func(n *snapv1.VolumeSnapshotContent) { n.Finalizers = []string{ContentFinalizer} }), false},
		"became ready": {mk(func(n *snapv1.VolumeSnapshotContent) {
			n.Status = &snapv1.VolumeSnapshotContentStatus{ReadyToUse: &ready}
		}), true},
		"deletion": {mk(func(n *snapv1.VolumeSnapshotContent) { now := metav1.Now(); n.DeletionTimestamp = &now }), true},
	}
	for name, tc := range cases {
		if got := changeNeedsSync(old, tc.cur); got != tc.want {
			t.Errorf("%s: changeNeedsSync = %v, want %v", name, got, tc.want)
		}
	}
}
