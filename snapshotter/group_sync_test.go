package snapshotter

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	grouplisters "github.com/kubernetes-csi/external-snapshotter/client/v8/listers/volumegroupsnapshot/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// fakeGroupCSI is a scripted GroupController for the group sync logic.
type fakeGroupCSI struct {
	csi.GroupControllerClient

	mu        sync.Mutex
	createErr error
	ready     bool
	creates   []*csi.CreateVolumeGroupSnapshotRequest
	gets      []*csi.GetVolumeGroupSnapshotRequest
	deletes   []*csi.DeleteVolumeGroupSnapshotRequest
}

func (f *fakeGroupCSI) group(id string, vols []string) *csi.VolumeGroupSnapshot {
	g := &csi.VolumeGroupSnapshot{GroupSnapshotId: id, ReadyToUse: f.ready, CreationTime: timestamppb.New(time.Unix(1700000000, 0))}
	for _, v := range vols {
		g.Snapshots = append(g.Snapshots, &csi.Snapshot{SnapshotId: "snap-" + v, SourceVolumeId: v, SizeBytes: 1 << 30,
			ReadyToUse: f.ready, CreationTime: timestamppb.New(time.Unix(1700000000, 0)), GroupSnapshotId: id})
	}
	return g
}

func (f *fakeGroupCSI) CreateVolumeGroupSnapshot(_ context.Context, req *csi.CreateVolumeGroupSnapshotRequest, _ ...grpc.CallOption) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, proto.Clone(req).(*csi.CreateVolumeGroupSnapshotRequest))
	if f.createErr != nil {
		return nil, f.createErr
	}
	return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: f.group("g-"+req.Name, req.SourceVolumeIds)}, nil
}

func (f *fakeGroupCSI) GetVolumeGroupSnapshot(_ context.Context, req *csi.GetVolumeGroupSnapshotRequest, _ ...grpc.CallOption) (*csi.GetVolumeGroupSnapshotResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets = append(f.gets, proto.Clone(req).(*csi.GetVolumeGroupSnapshotRequest))
	return &csi.GetVolumeGroupSnapshotResponse{GroupSnapshot: f.group(req.GroupSnapshotId, nil)}, nil
}

func (f *fakeGroupCSI) DeleteVolumeGroupSnapshot(_ context.Context, req *csi.DeleteVolumeGroupSnapshotRequest, _ ...grpc.CallOption) (*csi.DeleteVolumeGroupSnapshotResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, proto.Clone(req).(*csi.DeleteVolumeGroupSnapshotRequest))
	return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
}

type groupEnv struct {
	*unitEnv
	gcsi             *fakeGroupCSI
	content, classes cache.Indexer
}

func newGroupEnv(t *testing.T, cfg Config, objs ...any) *groupEnv {
	t.Helper()
	var kubeObjs []any
	var groups []any
	for _, o := range objs {
		switch o.(type) {
		case *groupv1.VolumeGroupSnapshotContent, *groupv1.VolumeGroupSnapshotClass:
			groups = append(groups, o)
		default:
			kubeObjs = append(kubeObjs, o)
		}
	}
	e := &groupEnv{gcsi: &fakeGroupCSI{},
		content: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		classes: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})}
	var secrets []*v1.Secret
	for _, o := range kubeObjs {
		secrets = append(secrets, o.(*v1.Secret))
	}
	e.unitEnv = newUnitEnv(t, cfg)
	ctx := context.Background()
	for _, s := range secrets {
		if _, err := e.kube.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range groups {
		var err error
		switch g := o.(type) {
		case *groupv1.VolumeGroupSnapshotContent:
			_, err = e.snap.GroupsnapshotV1().VolumeGroupSnapshotContents().Create(ctx, g, metav1.CreateOptions{})
		case *groupv1.VolumeGroupSnapshotClass:
			_, err = e.snap.GroupsnapshotV1().VolumeGroupSnapshotClasses().Create(ctx, g, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	e.c.group = &groupPath{csi: e.gcsi, queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		contents: grouplisters.NewVolumeGroupSnapshotContentLister(e.content),
		classes:  grouplisters.NewVolumeGroupSnapshotClassLister(e.classes)}
	return e
}

func (e *groupEnv) syncGroup(t *testing.T, name string) error {
	t.Helper()
	ctx := context.Background()
	contents, err := e.snap.GroupsnapshotV1().VolumeGroupSnapshotContents().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	classes, err := e.snap.GroupsnapshotV1().VolumeGroupSnapshotClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cl, cc []any
	for i := range contents.Items {
		cl = append(cl, &contents.Items[i])
	}
	for i := range classes.Items {
		cc = append(cc, &classes.Items[i])
	}
	if err := e.content.Replace(cl, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.classes.Replace(cc, ""); err != nil {
		t.Fatal(err)
	}
	return e.c.syncGroup(ctx, name)
}

func (e *groupEnv) getGroup(t *testing.T, name string) *groupv1.VolumeGroupSnapshotContent {
	t.Helper()
	g, err := e.snap.GroupsnapshotV1().VolumeGroupSnapshotContents().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func groupClass(params map[string]string) *groupv1.VolumeGroupSnapshotClass {
	return &groupv1.VolumeGroupSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "gclass"}, Driver: testDriver,
		DeletionPolicy: snapv1.VolumeSnapshotContentDelete, Parameters: params}
}

func groupContent(name string, vols ...string) *groupv1.VolumeGroupSnapshotContent {
	return &groupv1.VolumeGroupSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: []string{GroupContentFinalizer},
			Annotations: map[string]string{AnnGroupDeletionSecretName: "creds", AnnGroupDeletionSecretNamespace: "storage"}},
		Spec: groupv1.VolumeGroupSnapshotContentSpec{
			VolumeGroupSnapshotRef:       v1.ObjectReference{Name: "vgs", Namespace: "ns", UID: "1234-5678-9abc"},
			DeletionPolicy:               snapv1.VolumeSnapshotContentDelete,
			Driver:                       testDriver,
			VolumeGroupSnapshotClassName: new("gclass"),
			Source:                       groupv1.VolumeGroupSnapshotContentSource{VolumeHandles: vols},
		},
	}
}

var testSecret = &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "storage"}, Data: map[string][]byte{"k": []byte("v")}}

func TestGroupCreateRecordsMembers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ExtraCreateMetadata = true
	e := newGroupEnv(t, cfg, groupContent("gc", "vol-a", "vol-b", "vol-c"), testSecret,
		groupClass(map[string]string{"tier": "gold", paramGroupSnapshotterSecretName: "creds", paramGroupSnapshotterSecretNamespace: "storage"}))
	e.gcsi.ready = true
	if err := e.syncGroup(t, "gc"); err != nil {
		t.Fatal(err)
	}
	if len(e.gcsi.creates) != 1 {
		t.Fatalf("creates %v", e.gcsi.creates)
	}
	req := e.gcsi.creates[0]
	want := map[string]string{"tier": "gold", ParamVolumeGroupSnapshotName: "vgs", ParamVolumeGroupSnapshotNamespace: "ns", ParamVolumeGroupSnapshotContentName: "gc"}
	if req.Name != "groupsnapshot-1234-5678-9abc" || !slices.Equal(req.SourceVolumeIds, []string{"vol-a", "vol-b", "vol-c"}) ||
		req.Secrets["k"] != "v" || len(req.Parameters) != len(want) {
		t.Fatalf("request %v", req)
	}
	for k, v := range want {
		if req.Parameters[k] != v {
			t.Errorf("parameter %s = %q, want %q", k, req.Parameters[k], v)
		}
	}
	got := e.getGroup(t, "gc")
	st := got.Status
	if st == nil || *st.VolumeGroupSnapshotHandle != "g-"+req.Name || !*st.ReadyToUse || st.CreationTime == nil || len(st.VolumeSnapshotInfoList) != 3 {
		t.Fatalf("status %+v", st)
	}
	m := st.VolumeSnapshotInfoList[1]
	if m.VolumeHandle != "vol-b" || m.SnapshotHandle != "snap-vol-b" || !*m.ReadyToUse || *m.RestoreSize != 1<<30 || *m.CreationTime != time.Unix(1700000000, 0).UnixNano() {
		t.Errorf("member %+v", m)
	}
	if _, ok := got.Annotations[AnnGroupBeingCreated]; ok {
		t.Error("being-created annotation left after success")
	}
	if err := e.syncGroup(t, "gc"); err != nil || len(e.gcsi.creates)+len(e.gcsi.gets) != 1 {
		t.Fatalf("a ready group was asked again: %v %v %v", err, e.gcsi.creates, e.gcsi.gets)
	}
}

func TestGroupPollsWithGetUntilReady(t *testing.T) {
	e := newGroupEnv(t, DefaultConfig(), groupContent("gc", "vol-a", "vol-b"), testSecret, groupClass(nil))
	if _, ok := requeueDelay(e.syncGroup(t, "gc")); !ok {
		t.Fatal("a group not ready yet was not requeued")
	}
	e.gcsi.ready = true
	if err := e.syncGroup(t, "gc"); err != nil {
		t.Fatal(err)
	}
	if len(e.gcsi.creates) != 1 || len(e.gcsi.gets) != 1 || !slices.Equal(e.gcsi.gets[0].SnapshotIds, []string{"snap-vol-a", "snap-vol-b"}) {
		t.Fatalf("creates %v gets %v", e.gcsi.creates, e.gcsi.gets)
	}
	if st := e.getGroup(t, "gc").Status; !*st.ReadyToUse {
		t.Fatalf("status %+v", st)
	}
}

func TestGroupFailureWarnsThenSucceeds(t *testing.T) {
	cfg := DefaultConfig()
	cfg.GroupSnapshotNameUUIDLength = 8
	e := newGroupEnv(t, cfg, groupContent("gc", "vol-a"), testSecret, groupClass(nil))
	e.gcsi.createErr = status.Error(codes.Internal, "disk on fire")
	if err := e.syncGroup(t, "gc"); err == nil {
		t.Fatal("sync succeeded despite the driver failing")
	}
	got := e.getGroup(t, "gc")
	if got.Status == nil || got.Status.Error == nil || !strings.Contains(*got.Status.Error.Message, "disk on fire") || *got.Status.ReadyToUse {
		t.Fatalf("status after failure %+v", got.Status)
	}
	if _, ok := got.Annotations[AnnGroupBeingCreated]; ok {
		t.Error("being-created annotation kept after a final error")
	}
	if evs := e.drainEvents(); !hasEvent(evs, "Warning GroupSnapshotCreationFailed Failed to create group snapshot") {
		t.Fatalf("events %v", evs)
	}
	e.gcsi.createErr, e.gcsi.ready = nil, true
	if err := e.syncGroup(t, "gc"); err != nil {
		t.Fatal(err)
	}
	if st := e.getGroup(t, "gc").Status; st.Error != nil || !*st.ReadyToUse || *st.VolumeGroupSnapshotHandle != "g-groupsnapshot-12345678" {
		t.Fatalf("status after retry %+v", st)
	}
}

func TestGroupDelete(t *testing.T) {
	withHandle := func(name string, policy snapv1.DeletionPolicy, annotation string) *groupv1.VolumeGroupSnapshotContent {
		g := groupContent(name, "vol-a")
		g.Spec.DeletionPolicy = policy
		g.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		g.Annotations[annotation] = "yes"
		g.Status = &groupv1.VolumeGroupSnapshotContentStatus{VolumeGroupSnapshotHandle: new("g-1"), ReadyToUse: new(true),
			VolumeSnapshotInfoList: []groupv1.VolumeSnapshotInfo{{VolumeHandle: "vol-a", SnapshotHandle: "snap-a"}}}
		return g
	}
	for _, tc := range []struct {
		name          string
		content       *groupv1.VolumeGroupSnapshotContent
		wantDelete    bool
		wantFinalizer bool
	}{
		{"delete policy", withHandle("del", snapv1.VolumeSnapshotContentDelete, AnnGroupBeingDeleted), true, false},
		{"retain policy", withHandle("ret", snapv1.VolumeSnapshotContentRetain, AnnGroupBeingDeleted), false, false},
		{"create may be running", withHandle("busy", snapv1.VolumeSnapshotContentDelete, AnnGroupBeingCreated), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGroupEnv(t, DefaultConfig(), tc.content, testSecret, groupClass(nil))
			e.gcsi.ready = true
			if err := e.syncGroup(t, tc.content.Name); err != nil {
				t.Fatal(err)
			}
			if got := len(e.gcsi.deletes) == 1; got != tc.wantDelete {
				t.Fatalf("DeleteVolumeGroupSnapshot calls %v", e.gcsi.deletes)
			}
			if tc.wantDelete {
				d := e.gcsi.deletes[0]
				if d.GroupSnapshotId != "g-1" || !slices.Equal(d.SnapshotIds, []string{"snap-a"}) || d.Secrets["k"] != "v" {
					t.Fatalf("delete request %v", d)
				}
			}
			got := e.getGroup(t, tc.content.Name)
			if slices.Contains(got.Finalizers, GroupContentFinalizer) != tc.wantFinalizer {
				t.Fatalf("finalizers %v", got.Finalizers)
			}
		})
	}
}

func TestGroupPreProvisioned(t *testing.T) {
	g := groupContent("pre")
	g.Spec.VolumeGroupSnapshotClassName = nil
	g.Spec.Source = groupv1.VolumeGroupSnapshotContentSource{GroupSnapshotHandles: &groupv1.GroupSnapshotHandles{
		VolumeGroupSnapshotHandle: "g-existing", VolumeSnapshotHandles: []string{"s1", "s2"}}}
	e := newGroupEnv(t, DefaultConfig(), g)
	e.gcsi.ready = true
	if err := e.syncGroup(t, "pre"); err != nil {
		t.Fatal(err)
	}
	if len(e.gcsi.creates) != 0 || len(e.gcsi.gets) != 1 || e.gcsi.gets[0].GroupSnapshotId != "g-existing" || !slices.Equal(e.gcsi.gets[0].SnapshotIds, []string{"s1", "s2"}) {
		t.Fatalf("creates %v gets %v", e.gcsi.creates, e.gcsi.gets)
	}
	if st := e.getGroup(t, "pre").Status; st == nil || *st.VolumeGroupSnapshotHandle != "g-existing" || !*st.ReadyToUse {
		t.Fatalf("status %+v", st)
	}
}

func TestGroupBadInputSendsNothing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*groupv1.VolumeGroupSnapshotContent)
		class   map[string]string
		message string
	}{
		{"no class", func(g *groupv1.VolumeGroupSnapshotContent) { g.Spec.VolumeGroupSnapshotClassName = nil }, nil, "spec.volumeGroupSnapshotClassName"},
		{"unknown reserved parameter", nil, map[string]string{"csi.storage.k8s.io/bogus": "x"}, "csi.storage.k8s.io/bogus"},
		{"not bound", func(g *groupv1.VolumeGroupSnapshotContent) { g.Spec.VolumeGroupSnapshotRef.UID = "" }, nil, "uid is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := groupContent("gc", "vol-a")
			if tc.mutate != nil {
				tc.mutate(g)
			}
			e := newGroupEnv(t, DefaultConfig(), g, testSecret, groupClass(tc.class))
			if err := e.syncGroup(t, "gc"); err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("err %v, want %q", err, tc.message)
			}
			if len(e.gcsi.creates) != 0 {
				t.Fatal("CreateVolumeGroupSnapshot sent for bad input")
			}
			if evs := e.drainEvents(); !hasEvent(evs, "Warning GroupSnapshotCreationFailed") {
				t.Fatalf("events %v", evs)
			}
			if _, ok := e.getGroup(t, "gc").Annotations[AnnGroupBeingCreated]; ok {
				t.Fatal("being-created annotation set though nothing was sent")
			}
		})
	}
}

// A member content the snapshot-controller marked not ready is checked with
// ListSnapshots on its status handle, never cut with CreateSnapshot.
func TestGroupMemberChecked(t *testing.T) {
	member := testContent("member")
	member.Annotations = map[string]string{annGroupSnapshotHandle: "g-1"}
	e := newUnitEnv(t, DefaultConfig(), member, testSecret)
	if err := e.syncOnce(t, "member"); err != nil {
		t.Fatal(err)
	}
	if len(e.csi.creates)+len(e.csi.lists) != 0 {
		t.Fatal("a member without handles yet was sent to the driver")
	}
	got := e.get(t, "member")
	got.Status = &snapv1.VolumeSnapshotContentStatus{SnapshotHandle: new("snap-m"), VolumeGroupSnapshotHandle: new("g-1"), ReadyToUse: new(false)}
	if _, err := e.snap.SnapshotV1().VolumeSnapshotContents().UpdateStatus(context.Background(), got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.csi.known["snap-m"], e.csi.ready = true, true
	if err := e.syncOnce(t, "member"); err != nil {
		t.Fatal(err)
	}
	if len(e.csi.creates) != 0 || len(e.csi.lists) != 1 || e.csi.lists[0].SnapshotId != "snap-m" {
		t.Fatalf("creates %v lists %v", e.csi.creates, e.csi.lists)
	}
	if st := e.get(t, "member").Status; !*st.ReadyToUse {
		t.Fatalf("status %+v", st)
	}
}

// A content deleted while its create was in flight is deleted in the sync
// that finishes the create: removing the being-created mark is our own
// write, which no event brings back.
func TestDeletedDuringCreateIsDeletedAtOnce(t *testing.T) {
	c := testContent("c")
	now := metav1.Now()
	c.DeletionTimestamp = &now
	c.Finalizers = []string{ContentFinalizer}
	c.Annotations = map[string]string{AnnBeingCreated: "yes", AnnBeingDeleted: "yes"}
	e := newUnitEnv(t, DefaultConfig(), c, testClass(nil))
	e.csi.ready = true
	if err := e.syncOnce(t, "c"); err != nil {
		t.Fatal(err)
	}
	if len(e.csi.creates) != 1 || len(e.csi.deletes) != 1 || e.csi.deletes[0].SnapshotId != "id-"+e.csi.creates[0].Name {
		t.Fatalf("creates %v deletes %v", e.csi.creates, e.csi.deletes)
	}
	if got := e.get(t, "c"); slices.Contains(got.Finalizers, ContentFinalizer) {
		t.Fatalf("finalizer kept: %v", got.Finalizers)
	}

	g := groupContent("g", "vol-a")
	g.DeletionTimestamp = &now
	g.Annotations[AnnGroupBeingCreated], g.Annotations[AnnGroupBeingDeleted] = "yes", "yes"
	ge := newGroupEnv(t, DefaultConfig(), g, testSecret, groupClass(nil))
	ge.gcsi.ready = true
	if err := ge.syncGroup(t, "g"); err != nil {
		t.Fatal(err)
	}
	if len(ge.gcsi.creates) != 1 || len(ge.gcsi.deletes) != 1 {
		t.Fatalf("group creates %v deletes %v", ge.gcsi.creates, ge.gcsi.deletes)
	}
	if got := ge.getGroup(t, "g"); slices.Contains(got.Finalizers, GroupContentFinalizer) {
		t.Fatalf("group finalizer kept: %v", got.Finalizers)
	}
}
