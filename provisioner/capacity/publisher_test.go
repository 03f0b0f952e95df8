package capacity

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
)

const (
	testDriver = "d.example.com"
	testNS     = "kube-system"
)

// fakeCapacity answers GetCapacity with avail bytes (and max, when set) or err,
// and records the requests.
type fakeCapacity struct {
	avail, max int64
	err        error
	got        []*csi.GetCapacityRequest
}

func (f *fakeCapacity) GetCapacity(_ context.Context, req *csi.GetCapacityRequest, _ ...grpc.CallOption) (*csi.GetCapacityResponse, error) {
	f.got = append(f.got, req)
	if f.err != nil {
		return nil, f.err
	}
	resp := &csi.GetCapacityResponse{AvailableCapacity: f.avail}
	if f.max > 0 {
		resp.MaximumVolumeSize = wrapperspb.Int64(f.max)
	}
	return resp, nil
}

func class(name, driver string, wffc bool) *storagev1.StorageClass {
	mode := storagev1.VolumeBindingImmediate
	if wffc {
		mode = storagev1.VolumeBindingWaitForFirstConsumer
	}
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: driver,
		VolumeBindingMode: &mode, Parameters: map[string]string{"type": name}}
}

func object(name, class string, seg map[string]string, avail string, created time.Time) *storagev1.CSIStorageCapacity {
	q := resource.MustParse(avail)
	return &storagev1.CSIStorageCapacity{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, CreationTimestamp: metav1.NewTime(created),
			Labels: map[string]string{LabelDriverName: testDriver, LabelManagedBy: ManagedByValue}},
		StorageClassName: class, NodeTopology: &metav1.LabelSelector{MatchLabels: seg}, Capacity: &q,
	}
}

// writes are the publisher's create/update/delete actions, as "verb name-or-class capacity".
func writes(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		if a.GetResource().Resource != "csistoragecapacities" {
			continue
		}
		switch a.GetVerb() {
		case "create":
			o := a.(k8stesting.CreateAction).GetObject().(*storagev1.CSIStorageCapacity)
			out = append(out, "create "+o.StorageClassName+" "+o.Capacity.String())
		case "update":
			o := a.(k8stesting.UpdateAction).GetObject().(*storagev1.CSIStorageCapacity)
			out = append(out, "update "+o.Name+" "+o.Capacity.String())
		case "delete":
			out = append(out, "delete "+a.(k8stesting.DeleteAction).GetName())
		}
	}
	return out
}

// One sync of the publisher against a fake API and driver: the writes it
// makes, the calls it makes, and its error, for each kind of difference
// between the StorageClasses x segments and the objects that exist.
func TestSync(t *testing.T) {
	old, newer := time.Unix(1000, 0), time.Unix(2000, 0)
	zoneA := map[string]string{"zone": "a"}
	for _, tc := range []struct {
		name                string
		objs                []runtime.Object
		segments            []map[string]string
		forImmediateBinding bool
		driver              fakeCapacity
		wantWrites          []string
		wantCalls           int
		wantErr             string
	}{
		{name: "a WaitForFirstConsumer class gets an object", objs: []runtime.Object{class("fast", testDriver, true)},
			driver: fakeCapacity{avail: 1 << 30}, wantWrites: []string{"create fast 1Gi"}, wantCalls: 1},
		{name: "Immediate classes only with --capacity-for-immediate-binding",
			objs:   []runtime.Object{class("now", testDriver, false)},
			driver: fakeCapacity{avail: 1 << 30}, wantWrites: nil, wantCalls: 0},
		{name: "--capacity-for-immediate-binding", objs: []runtime.Object{class("now", testDriver, false)},
			forImmediateBinding: true, driver: fakeCapacity{avail: 1 << 30}, wantWrites: []string{"create now 1Gi"}, wantCalls: 1},
		{name: "another driver's class is not ours", objs: []runtime.Object{class("other", "other.example.com", true)},
			driver: fakeCapacity{avail: 1 << 30}},
		{name: "one object per segment", objs: []runtime.Object{class("fast", testDriver, true)},
			segments: []map[string]string{{"zone": "a"}, {"zone": "b"}}, driver: fakeCapacity{avail: 2 << 30},
			wantWrites: []string{"create fast 2Gi", "create fast 2Gi"}, wantCalls: 2},
		{name: "unchanged capacity: no write",
			objs:     []runtime.Object{class("fast", testDriver, true), object("csisc-1", "fast", zoneA, "1Gi", old)},
			segments: []map[string]string{zoneA}, driver: fakeCapacity{avail: 1 << 30}, wantCalls: 1},
		{name: "changed capacity: update",
			objs:     []runtime.Object{class("fast", testDriver, true), object("csisc-1", "fast", zoneA, "1Gi", old)},
			segments: []map[string]string{zoneA}, driver: fakeCapacity{avail: 3 << 30},
			wantWrites: []string{"update csisc-1 3Gi"}, wantCalls: 1},
		{name: "class gone: object deleted", objs: []runtime.Object{object("csisc-1", "gone", zoneA, "1Gi", old)},
			segments: []map[string]string{zoneA}, wantWrites: []string{"delete csisc-1"}},
		{name: "segment gone: object deleted",
			objs:     []runtime.Object{class("fast", testDriver, true), object("csisc-1", "fast", zoneA, "1Gi", old)},
			segments: []map[string]string{{"zone": "b"}}, driver: fakeCapacity{avail: 1 << 30},
			wantWrites: []string{"create fast 1Gi", "delete csisc-1"}, wantCalls: 1},
		{name: "duplicates: the oldest is kept",
			objs: []runtime.Object{class("fast", testDriver, true), object("csisc-new", "fast", zoneA, "1Gi", newer),
				object("csisc-old", "fast", zoneA, "1Gi", old)},
			segments: []map[string]string{zoneA}, driver: fakeCapacity{avail: 1 << 30},
			wantWrites: []string{"delete csisc-new"}, wantCalls: 1},
		{name: "GetCapacity fails: error naming the class, no write", objs: []runtime.Object{class("fast", testDriver, true)},
			driver: fakeCapacity{err: errors.New("backend down")}, wantCalls: 1, wantErr: "GetCapacity for StorageClass fast"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, client := newTestPublisher(t, tc.segments, tc.forImmediateBinding, &tc.driver, tc.objs...)
			client.ClearActions()
			err := p.sync(t.Context(), capacityKey)
			after := hub.RequeueAfter(time.Hour)
			switch {
			case tc.wantErr == "" && (err == nil || err.Error() != after.Error()):
				t.Errorf("sync: %v, want a requeue after the poll interval", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("sync: %v, want an error containing %q", err, tc.wantErr)
			}
			got := writes(client)
			slices.Sort(got)
			slices.Sort(tc.wantWrites)
			if !slices.Equal(got, tc.wantWrites) {
				t.Errorf("writes %q, want %q", got, tc.wantWrites)
			}
			if len(tc.driver.got) != tc.wantCalls {
				t.Errorf("%d GetCapacity calls, want %d", len(tc.driver.got), tc.wantCalls)
			}
			for _, req := range tc.driver.got {
				if req.Parameters["type"] == "" || len(req.VolumeCapabilities) != 1 {
					t.Errorf("GetCapacity request %v: want the class parameters and one capability", req)
				}
			}
		})
	}
}

// What a created object says: the sidecar's labels, the segment, capacity
// and maximum volume size, and the owner found through POD_NAME.
func TestCreatedObject(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "csi-hub-0", Namespace: testNS, UID: "pod-uid"}}
	t.Setenv("POD_NAME", pod.Name)
	drv := &fakeCapacity{avail: 5 << 30, max: 1 << 30}
	p, client := newTestPublisherOwned(t, 0, []map[string]string{{"zone": "a"}}, drv, class("fast", testDriver, true), pod)
	if err := p.sync(t.Context(), capacityKey); err != nil && err.Error() != hub.RequeueAfter(time.Hour).Error() {
		t.Fatal(err)
	}
	list, err := client.StorageV1().CSIStorageCapacities(testNS).List(t.Context(), metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("list: %v, %d objects, want 1", err, len(list.Items))
	}
	o := list.Items[0]
	if o.Labels[LabelDriverName] != testDriver || o.Labels[LabelManagedBy] != ManagedByValue || o.GenerateName != "csisc-" {
		t.Errorf("labels %v, generateName %q", o.Labels, o.GenerateName)
	}
	if o.NodeTopology == nil || o.NodeTopology.MatchLabels["zone"] != "a" || o.Capacity.Value() != 5<<30 || o.MaximumVolumeSize.Value() != 1<<30 {
		t.Errorf("topology %v, capacity %v, max %v", o.NodeTopology, o.Capacity, o.MaximumVolumeSize)
	}
	if len(o.OwnerReferences) != 1 || o.OwnerReferences[0].UID != "pod-uid" || !ptr.Deref(o.OwnerReferences[0].Controller, false) {
		t.Errorf("owner references %v, want the pod as controller", o.OwnerReferences)
	}
	if seg := drv.got[0].AccessibleTopology.GetSegments(); seg["zone"] != "a" {
		t.Errorf("GetCapacity topology %v, want the segment", seg)
	}
}

// The capacity client has its own budget, not the hub's.
func TestNewWriterBudget(t *testing.T) {
	w, err := NewWriter(&rest.Config{Host: "https://127.0.0.1:1", QPS: 50, Burst: 100}, 1, 5)
	if err != nil {
		t.Fatal(err)
	}
	if qps := w.StorageV1().RESTClient().GetRateLimiter().QPS(); qps != 1 {
		t.Errorf("capacity client QPS %v, want 1", qps)
	}
}

// Without NAMESPACE there is nowhere to put the objects: a clear error.
func TestNewNeedsNamespace(t *testing.T) {
	t.Setenv("NAMESPACE", "")
	t.Setenv("POD_NAMESPACE", "")
	client := fake.NewClientset()
	f := informers.NewSharedInformerFactory(client, 0)
	_, err := New(t.Context(), Deps{Driver: testDriver, Writer: client, Capacities: f.Storage().V1().CSIStorageCapacities(),
		Classes: f.Storage().V1().StorageClasses(), NewQueue: (&hub.Hub{}).NewQueue}, Config{OwnerrefLevel: -1})
	if err == nil || !strings.Contains(err.Error(), "NAMESPACE") {
		t.Errorf("New without NAMESPACE: %v, want an error naming NAMESPACE", err)
	}
}

func newTestPublisher(t *testing.T, segments []map[string]string, forImmediate bool, drv *fakeCapacity, objs ...runtime.Object) (*Publisher, *fake.Clientset) {
	t.Helper()
	p, client := newTestPublisherOwned(t, -1, segments, drv, objs...)
	p.cfg.ForImmediateBinding = forImmediate
	return p, client
}

func newTestPublisherOwned(t *testing.T, ownerLevel int, segments []map[string]string, drv *fakeCapacity, objs ...runtime.Object) (*Publisher, *fake.Clientset) {
	t.Helper()
	t.Setenv("NAMESPACE", testNS)
	if segments == nil {
		segments = []map[string]string{{}}
	}
	client := fake.NewClientset(objs...)
	// The API server names objects from generateName; the fake does not.
	n := 0
	client.PrependReactor("create", "csistoragecapacities", func(a k8stesting.Action) (bool, runtime.Object, error) {
		o := a.(k8stesting.CreateAction).GetObject().(*storagev1.CSIStorageCapacity)
		if o.Name == "" && o.GenerateName != "" {
			n++
			o.Name = o.GenerateName + "gen" + strconv.Itoa(n)
		}
		return false, nil, nil
	})
	f := informers.NewSharedInformerFactory(client, 0)
	p, err := New(t.Context(), Deps{
		Driver: testDriver, CSI: drv, Kube: client, Writer: client,
		Capacities: f.Storage().V1().CSIStorageCapacities(), Classes: f.Storage().V1().StorageClasses(),
		Segments: func() ([]map[string]string, error) { return segments, nil },
		Steps:    steps.NewRecorder(10), NewQueue: (&hub.Hub{}).NewQueue,
	}, Config{PollInterval: time.Hour, Threads: 2, OwnerrefLevel: ownerLevel, Timeout: time.Second,
		Topology: len(segments[0]) > 0, ManagedBy: ManagedByValue, Controller: "provisioner"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return p, client
}
