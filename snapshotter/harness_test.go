package snapshotter

//lint:file-ignore SA1019 the snapshot client module (client/v8) generates no apply configurations, so its fake package has no NewClientset: NewSimpleClientset is its only fake.

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	snaplisters "github.com/kubernetes-csi/external-snapshotter/client/v8/listers/volumesnapshot/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/internal/testutil"
)

// fakeCSI is a scripted CSI controller for unit tests of the sync logic; the
// integration tests use test/fakedriver over a real socket instead.
type fakeCSI struct {
	csi.ControllerClient // nil: any other method panics, so a stray call is noticed

	mu        sync.Mutex
	createErr error
	deleteErr error
	listErr   error
	ready     bool
	creates   []*csi.CreateSnapshotRequest
	deletes   []*csi.DeleteSnapshotRequest
	lists     []*csi.ListSnapshotsRequest
	known     map[string]bool // snapshot IDs ListSnapshots finds
}

func (f *fakeCSI) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest, _ ...grpc.CallOption) (*csi.CreateSnapshotResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, proto.Clone(req).(*csi.CreateSnapshotRequest))
	if f.createErr != nil {
		return nil, f.createErr
	}
	return &csi.CreateSnapshotResponse{Snapshot: &csi.Snapshot{
		SnapshotId: "id-" + req.Name, SourceVolumeId: req.SourceVolumeId, SizeBytes: 1 << 30,
		CreationTime: timestamppb.New(time.Unix(1700000000, 5)), ReadyToUse: f.ready,
	}}, nil
}

func (f *fakeCSI) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest, _ ...grpc.CallOption) (*csi.DeleteSnapshotResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, proto.Clone(req).(*csi.DeleteSnapshotRequest))
	if f.deleteErr != nil {
		return nil, f.deleteErr
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (f *fakeCSI) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest, _ ...grpc.CallOption) (*csi.ListSnapshotsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists = append(f.lists, proto.Clone(req).(*csi.ListSnapshotsRequest))
	if f.listErr != nil {
		return nil, f.listErr
	}
	if !f.known[req.SnapshotId] {
		return &csi.ListSnapshotsResponse{}, nil
	}
	return &csi.ListSnapshotsResponse{Entries: []*csi.ListSnapshotsResponse_Entry{{Snapshot: &csi.Snapshot{
		SnapshotId: req.SnapshotId, SizeBytes: 2 << 30, ReadyToUse: f.ready,
		CreationTime: timestamppb.New(time.Unix(1600000000, 0)),
	}}}}, nil
}

type unitEnv struct {
	c       *Controller
	csi     *fakeCSI
	snap    *snapfake.Clientset
	kube    *kubefake.Clientset
	events  *record.FakeRecorder
	steps   *steps.Recorder
	content cache.Indexer
	class   cache.Indexer
}

const testDriver = "test.csi.io"

func newUnitEnv(t *testing.T, cfg Config, objs ...runtime.Object) *unitEnv {
	t.Helper()
	var snapObjs, kubeObjs []runtime.Object
	for _, o := range objs {
		switch o.(type) {
		case *snapv1.VolumeSnapshotContent, *snapv1.VolumeSnapshotClass:
			snapObjs = append(snapObjs, o)
		default:
			kubeObjs = append(kubeObjs, o)
		}
	}
	e := &unitEnv{
		csi:     &fakeCSI{known: map[string]bool{}},
		snap:    snapfake.NewSimpleClientset(snapObjs...),
		kube:    kubefake.NewClientset(kubeObjs...),
		events:  record.NewFakeRecorder(100),
		steps:   steps.NewRecorder(100),
		content: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		class:   cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
	}
	c, err := New(t.Context(), Deps{
		DriverConn: hub.DriverConn{Driver: testDriver, CSI: e.csi,
			Caps: testutil.ControllerCaps(csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS)},
		Kube: e.kube, Snapshots: hub.NewSnapshotAPI(e.snap, 0), Events: e.events,
		RetryStart: time.Second, RetryMax: 10 * time.Second,
		Work: hub.Work{Steps: e.steps, Tuning: Defaults, NewQueue: func(string) hub.Queue {
			return workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
		}},
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Listers over indexers that refresh() fills from the fake API, so each
	// sync sees exactly what the previous one wrote.
	c.contents = snaplisters.NewVolumeSnapshotContentLister(e.content)
	c.classes = snaplisters.NewVolumeSnapshotClassLister(e.class)
	e.c = c
	return e
}

func (e *unitEnv) refresh(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	contents, err := e.snap.SnapshotV1().VolumeSnapshotContents().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	classes, err := e.snap.SnapshotV1().VolumeSnapshotClasses().List(ctx, metav1.ListOptions{})
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
	if err := e.class.Replace(cc, ""); err != nil {
		t.Fatal(err)
	}
}

// syncOnce refreshes the listers and syncs name.
func (e *unitEnv) syncOnce(t *testing.T, name string) error {
	t.Helper()
	e.refresh(t)
	return e.c.sync(context.Background(), name)
}

func (e *unitEnv) get(t *testing.T, name string) *snapv1.VolumeSnapshotContent {
	t.Helper()
	c, err := e.snap.SnapshotV1().VolumeSnapshotContents().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// drainEvents returns the events emitted so far ("Warning Reason message").
func (e *unitEnv) drainEvents() []string {
	var out []string
	for {
		select {
		case ev := <-e.events.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func hasEvent(events []string, prefix string) bool {
	for _, ev := range events {
		if strings.HasPrefix(ev, prefix) {
			return true
		}
	}
	return false
}

func testClass(params map[string]string) *snapv1.VolumeSnapshotClass {
	return &snapv1.VolumeSnapshotClass{
		ObjectMeta:     metav1.ObjectMeta{Name: "class-1"},
		Driver:         testDriver,
		DeletionPolicy: snapv1.VolumeSnapshotContentDelete,
		Parameters:     params,
	}
}

// requeueDelay recognises hub.RequeueAfter by its message.
func requeueDelay(err error) (time.Duration, bool) {
	if err == nil || !strings.HasPrefix(err.Error(), "requeue after ") {
		return 0, false
	}
	d, perr := time.ParseDuration(strings.TrimPrefix(err.Error(), "requeue after "))
	return d, perr == nil
}
