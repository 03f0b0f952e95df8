package snapshotter

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/testutil"
)

// The content sync's error paths, one sync each, in the style of
// external-attacher's framework_test.go: objects in fake clientsets, a
// scripted driver, then the API requests, CSI calls, events and error
// compared with the case's. The integration tests (*_integration_test.go)
// are the proof against a real snapshot-controller; these cover what a real
// driver and API server cannot be made to do on demand.
func TestSyncErrorPaths(t *testing.T) {
	const content = "content-1"
	// withStatus: CreateSnapshot was answered before (handle recorded, not ready).
	withStatus := func(c *snapv1.VolumeSnapshotContent, handle string, ready bool) *snapv1.VolumeSnapshotContent {
		c.Status = &snapv1.VolumeSnapshotContentStatus{ReadyToUse: ptr.To(ready)}
		if handle != "" {
			c.Status.SnapshotHandle = ptr.To(handle)
		}
		return c
	}
	deleting := func(c *snapv1.VolumeSnapshotContent) *snapv1.VolumeSnapshotContent {
		c.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		c.Finalizers = []string{ContentFinalizer}
		c.Annotations = map[string]string{AnnBeingDeleted: "yes"}
		return c
	}
	preProvisioned := func() *snapv1.VolumeSnapshotContent {
		c := testContent(content)
		c.Spec.Source = snapv1.VolumeSnapshotContentSource{SnapshotHandle: ptr.To("snap-handle")}
		return c
	}
	secret := &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "storage"}, Data: map[string][]byte{"k": []byte("v")}}
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "snapshot.storage.k8s.io", Resource: "volumesnapshotcontents"}, content, errors.New("stale"))
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "snapshot.storage.k8s.io", Resource: "volumesnapshotcontents"}, content, errors.New("RBAC says no"))
	refuse := func(verb, sub string, err error) func(*k8stesting.Fake) {
		return func(f *k8stesting.Fake) {
			f.PrependReactor(verb, "volumesnapshotcontents", func(a k8stesting.Action) (bool, runtime.Object, error) {
				return a.GetSubresource() == sub, nil, err
			})
		}
	}
	const (
		beingCreated = `"` + AnnBeingCreated + `":"yes"`
		dropCreated  = `"` + AnnBeingCreated + `":null`
	)

	tests := []struct {
		name    string
		objs    []runtime.Object
		csi     func(*fakeCSI)
		snapAPI []func(*k8stesting.Fake)
		wantErr string
		// want are the requests to the snapshot API; kube those to the core API.
		want   []testutil.WantAction
		kube   []string
		calls  []string // CSI methods called
		events []string
	}{
		{
			name: "CreateSnapshot fails for good: annotation set then removed, error in status, Warning",
			objs: []runtime.Object{testContent(content), testClass(nil)},
			csi:  func(f *fakeCSI) { f.createErr = status.Error(codes.InvalidArgument, "bad volume") },
			want: []testutil.WantAction{
				{Key: "patch volumesnapshotcontents " + content, Contains: []string{beingCreated}},
				{Key: "patch volumesnapshotcontents " + content, Contains: []string{dropCreated}},
				{Key: "patch volumesnapshotcontents/status " + content, Contains: []string{`"readyToUse":false`, "bad volume"}},
			},
			calls:   []string{"CreateSnapshot"},
			wantErr: "failed to take snapshot of the volume vol-1",
			events:  []string{"Warning " + ReasonCreationFailed},
		},
		{
			name: "CreateSnapshot times out: the being-created annotation stays, so a late snapshot is not leaked",
			objs: []runtime.Object{testContent(content), testClass(nil)},
			csi:  func(f *fakeCSI) { f.createErr = status.Error(codes.DeadlineExceeded, "slow backend") },
			want: []testutil.WantAction{
				{Key: "patch volumesnapshotcontents " + content, Contains: []string{beingCreated}},
				{Key: "patch volumesnapshotcontents/status " + content, Contains: []string{"slow backend"}},
			},
			calls:   []string{"CreateSnapshot"},
			wantErr: "DeadlineExceeded",
			events:  []string{"Warning " + ReasonCreationFailed},
		},
		{
			name:    "class gone: no CSI call, no annotation, error in status and a Warning",
			objs:    []runtime.Object{testContent(content)},
			want:    []testutil.WantAction{{Key: "patch volumesnapshotcontents/status " + content, Contains: []string{"class-1"}}},
			wantErr: "VolumeSnapshotClass class-1",
			events:  []string{"Warning " + ReasonCreationFailed},
		},
		{
			name: "bad class parameter (unknown key under the reserved prefix): no CSI call, no annotation",
			objs: []runtime.Object{testContent(content),
				testClass(map[string]string{"csi.storage.k8s.io/snapshotter-secret-nmae": "typo"})},
			want:    []testutil.WantAction{{Key: "patch volumesnapshotcontents/status " + content, Contains: []string{"snapshotter-secret-nmae"}}},
			wantErr: "not a known key",
			events:  []string{"Warning " + ReasonCreationFailed},
		},
		{
			name: "pre-provisioned, bad class parameter (list secret template with an unknown variable): no CSI call",
			objs: []runtime.Object{preProvisioned(),
				testClass(map[string]string{ParamSnapshotterListSecretName: "${pv.name}", ParamSnapshotterListSecretNamespace: "storage"})},
			want:    []testutil.WantAction{{Key: "patch volumesnapshotcontents/status " + content, Contains: []string{"pv.name"}}},
			wantErr: "pv.name",
			events:  []string{"Warning " + ReasonCheckFailed},
		},
		{
			name:    "snapshotter secret missing: read, no CSI call, Warning",
			objs:    []runtime.Object{withSecret(testContent(content)), testClass(nil)},
			want:    []testutil.WantAction{{Key: "patch volumesnapshotcontents/status " + content, Contains: []string{"creds"}}},
			kube:    []string{"get secrets storage/creds"},
			wantErr: "creds",
			events:  []string{"Warning " + ReasonCreationFailed},
		},
		{
			name:    "snapshotter secret half named (namespace annotation missing): no read, no CSI call",
			objs:    []runtime.Object{halfSecret(testContent(content)), testClass(nil)},
			want:    []testutil.WantAction{{Key: "patch volumesnapshotcontents/status " + content, Contains: []string{"must both be set"}}},
			wantErr: "must both be set",
			events:  []string{"Warning " + ReasonCreationFailed},
		},
		{
			name:    "marking being-created keeps conflicting: re-read and retried, then no CSI call (nothing may be cut unmarked)",
			objs:    []runtime.Object{withSecret(testContent(content)), testClass(nil), secret},
			snapAPI: []func(*k8stesting.Fake){refuse("patch", "", conflict)},
			want: append(slices.Repeat([]testutil.WantAction{
				{Key: "patch volumesnapshotcontents " + content, Contains: []string{beingCreated}},
				{Key: "get volumesnapshotcontents " + content},
			}, 5), testutil.WantAction{Key: "patch volumesnapshotcontents/status " + content}),
			kube:    []string{"get secrets storage/creds"},
			wantErr: "stale",
			events:  []string{"Warning " + ReasonCreationFailed},
		},
		{
			name:    "recording the created snapshot is refused: the annotation stays, error for a retry",
			objs:    []runtime.Object{testContent(content), testClass(nil)},
			csi:     func(f *fakeCSI) { f.ready = true },
			snapAPI: []func(*k8stesting.Fake){refuse("patch", "status", forbidden)},
			want: []testutil.WantAction{
				{Key: "patch volumesnapshotcontents " + content, Contains: []string{beingCreated}},
				{Key: "patch volumesnapshotcontents/status " + content, Contains: []string{`"snapshotHandle":"id-snapshot-uid-a"`}},
				{Key: "patch volumesnapshotcontents/status " + content},
			},
			calls:   []string{"CreateSnapshot"},
			wantErr: "RBAC says no",
			events:  []string{"Warning " + ReasonCreationFailed},
		},
		{
			name: "poll of an unready snapshot fails: check-and-update reason, handle kept",
			objs: []runtime.Object{withStatus(testContent(content), "id-snapshot-uid-a", false), testClass(nil)},
			csi:  func(f *fakeCSI) { f.createErr = status.Error(codes.Internal, "backend lost it") },
			want: []testutil.WantAction{
				{Key: "patch volumesnapshotcontents/status " + content, Contains: []string{"backend lost it"},
					NotContain: []string{`"snapshotHandle":null`}},
			},
			calls:   []string{"CreateSnapshot"},
			wantErr: "backend lost it",
			events:  []string{"Warning " + ReasonCheckFailed},
		},
		{
			name:    "pre-provisioned: ListSnapshots fails, Warning, no status handle",
			objs:    []runtime.Object{preProvisioned(), testClass(nil)},
			csi:     func(f *fakeCSI) { f.listErr = status.Error(codes.Unavailable, "driver restarting") },
			want:    []testutil.WantAction{{Key: "patch volumesnapshotcontents/status " + content, Contains: []string{"driver restarting"}}},
			calls:   []string{"ListSnapshots"},
			wantErr: "driver restarting",
			events:  []string{"Warning " + ReasonCheckFailed},
		},
		{
			name:    "deletion: DeleteSnapshot fails, the finalizer stays, Warning",
			objs:    []runtime.Object{deleting(withStatus(testContent(content), "id-snapshot-uid-a", true)), testClass(nil)},
			csi:     func(f *fakeCSI) { f.deleteErr = status.Error(codes.FailedPrecondition, "snapshot has clones") },
			calls:   []string{"DeleteSnapshot"},
			wantErr: "snapshot has clones",
			events:  []string{"Warning " + ReasonDeleteError},
		},
		{
			name:    "deletion: the deletion secret is missing, no CSI call, Warning",
			objs:    []runtime.Object{withSecret(deleting(withStatus(testContent(content), "id-snapshot-uid-a", true))), testClass(nil)},
			kube:    []string{"get secrets storage/creds"},
			wantErr: "creds",
			events:  []string{"Warning " + ReasonDeleteError},
		},
		{
			name:    "deletion: snapshot deleted, removing the finalizer is refused: handle forgotten first, error",
			objs:    []runtime.Object{deleting(withStatus(testContent(content), "id-snapshot-uid-a", true)), testClass(nil)},
			snapAPI: []func(*k8stesting.Fake){refuse("patch", "", forbidden)},
			want: []testutil.WantAction{
				{Key: "patch volumesnapshotcontents/status " + content, Contains: []string{`"snapshotHandle":null`}},
				{Key: "patch volumesnapshotcontents " + content, Contains: []string{`"finalizers":[]`}},
			},
			calls:   []string{"DeleteSnapshot"},
			wantErr: "RBAC says no",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newUnitEnv(t, DefaultConfig(), tc.objs...)
			if tc.csi != nil {
				tc.csi(e.csi)
			}
			e.refresh(t)
			for _, r := range tc.snapAPI {
				r(&e.snap.Fake)
			}
			e.snap.ClearActions()
			e.kube.ClearActions()

			err := e.c.sync(context.Background(), content)

			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
			}
			for _, d := range testutil.CompareActions(testutil.APIActions(e.snap.Actions()), tc.want) {
				t.Error("snapshot API:", d)
			}
			var kube []string
			for _, a := range testutil.APIActions(e.kube.Actions()) {
				kube = append(kube, a.Key)
			}
			if !slices.Equal(kube, tc.kube) {
				t.Errorf("core API requests %q, want %q", kube, tc.kube)
			}
			if got := e.csi.methods(); !slices.Equal(got, tc.calls) {
				t.Errorf("CSI calls %v, want %v", got, tc.calls)
			}
			events := testutil.DrainEvents(e.events)
			if !testutil.EventsHavePrefixes(events, tc.events) {
				t.Errorf("events %q, want %q", events, tc.events)
			}
		})
	}
}

// withSecret names the snapshotter secret storage/creds in the content's
// annotations, as the snapshot-controller copies it from the class.
func withSecret(c *snapv1.VolumeSnapshotContent) *snapv1.VolumeSnapshotContent {
	c = halfSecret(c)
	c.Annotations[AnnDeletionSecretNamespace] = "storage"
	return c
}

// halfSecret names the secret without its namespace.
func halfSecret(c *snapv1.VolumeSnapshotContent) *snapv1.VolumeSnapshotContent {
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[AnnDeletionSecretName] = "creds"
	return c
}

// methods lists the CSI calls made, in order.
func (f *fakeCSI) methods() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for range f.creates {
		out = append(out, "CreateSnapshot")
	}
	for range f.lists {
		out = append(out, "ListSnapshots")
	}
	for range f.deletes {
		out = append(out, "DeleteSnapshot")
	}
	return out
}
