package healthmonitor

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/testutil"
)

const tableDriver = "unit.csi-hub.io"

// healthCSI is a scripted driver for the health monitor's four read calls:
// each answers from its script (volume ID -> condition; nil entry: healthy)
// or with the error scripted for it, and every call is recorded.
type healthCSI struct {
	csi.ControllerClient // nil: any other call panics

	abnormal map[string]string // volume ID -> message of an abnormal condition
	healthy  []string          // volume IDs reported healthy
	errs     map[string]error  // method or "method volumeID" -> error
	// pages splits the list calls' answer after this many entries (0: one page).
	pages int
	// hang makes every call wait for its context to end.
	hang bool

	mu    sync.Mutex
	calls []string
}

func (f *healthCSI) call(ctx context.Context, method, id string) error {
	f.mu.Lock()
	f.calls = append(f.calls, method)
	f.mu.Unlock()
	if f.hang {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	if err := f.errs[method+" "+id]; err != nil {
		return err
	}
	return f.errs[method]
}

func (f *healthCSI) methods() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(slices.Values(f.calls))
}

// ids lists every volume the driver knows, in order.
func (f *healthCSI) ids() []string {
	var out []string
	for id := range f.abnormal {
		out = append(out, id)
	}
	slices.Sort(out)
	return append(out, f.healthy...)
}

// page returns the entries of the page starting at token, and the next token.
func (f *healthCSI) page(token string) ([]string, string) {
	ids := f.ids()
	start := 0
	if token != "" {
		start = slices.Index(ids, token)
	}
	if f.pages == 0 || start+f.pages >= len(ids) {
		return ids[start:], ""
	}
	return ids[start : start+f.pages], ids[start+f.pages]
}

func (f *healthCSI) health(id string) *csi.VolumeHealth {
	if msg, ok := f.abnormal[id]; ok {
		return &csi.VolumeHealth{VolumeId: id, HealthStatuses: []*csi.VolumeHealth_VolumeHealthEntry{{Message: msg}}}
	}
	return &csi.VolumeHealth{VolumeId: id}
}

// legacy is the pre-1.13 VolumeCondition of id in VolumeStatus's unknown field 2.
func (f *healthCSI) legacy(id string) []byte {
	msg, abnormal := f.abnormal[id]
	var inner []byte
	if abnormal {
		inner = protowire.AppendTag(inner, 1, protowire.VarintType)
		inner = protowire.AppendVarint(inner, 1)
	}
	inner = protowire.AppendTag(inner, 2, protowire.BytesType)
	inner = protowire.AppendString(inner, msg)
	raw := protowire.AppendTag(nil, 2, protowire.BytesType)
	return protowire.AppendBytes(raw, inner)
}

func (f *healthCSI) ControllerListVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest, _ ...grpc.CallOption) (*csi.ControllerListVolumeHealthResponse, error) {
	if err := f.call(ctx, "ControllerListVolumeHealth", req.StartingToken); err != nil {
		return nil, err
	}
	ids, next := f.page(req.StartingToken)
	rsp := &csi.ControllerListVolumeHealthResponse{NextToken: next}
	for _, id := range ids {
		rsp.Entries = append(rsp.Entries, f.health(id))
	}
	return rsp, nil
}

func (f *healthCSI) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest, _ ...grpc.CallOption) (*csi.ControllerGetVolumeHealthResponse, error) {
	if err := f.call(ctx, "ControllerGetVolumeHealth", req.VolumeId); err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: f.health(req.VolumeId)}, nil
}

func (f *healthCSI) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest, _ ...grpc.CallOption) (*csi.ListVolumesResponse, error) {
	if err := f.call(ctx, "ListVolumes", req.StartingToken); err != nil {
		return nil, err
	}
	ids, next := f.page(req.StartingToken)
	rsp := &csi.ListVolumesResponse{NextToken: next}
	for _, id := range ids {
		st := &csi.ListVolumesResponse_VolumeStatus{}
		st.ProtoReflect().SetUnknown(f.legacy(id))
		rsp.Entries = append(rsp.Entries, &csi.ListVolumesResponse_Entry{Volume: &csi.Volume{VolumeId: id}, Status: st})
	}
	return rsp, nil
}

func (f *healthCSI) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest, _ ...grpc.CallOption) (*csi.ControllerGetVolumeResponse, error) {
	if err := f.call(ctx, "ControllerGetVolume", req.VolumeId); err != nil {
		return nil, err
	}
	st := &csi.ControllerGetVolumeResponse_VolumeStatus{}
	st.ProtoReflect().SetUnknown(f.legacy(req.VolumeId))
	return &csi.ControllerGetVolumeResponse{Volume: &csi.Volume{VolumeId: req.VolumeId}, Status: st}, nil
}

// boundPV is a Bound PV of driver with volume handle "vol-<name>", bound to
// claim ns/<name>.
func boundPV(name, driver string) *v1.PersistentVolume {
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + name},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeSource: v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: "vol-" + name}},
			ClaimRef:               &v1.ObjectReference{Namespace: "ns", Name: name, UID: types.UID("uid-pvc-" + name)},
		},
		Status: v1.PersistentVolumeStatus{Phase: v1.VolumeBound},
	}
}

func claim(name string) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-pvc-" + name)}}
}

// abnormalEvent is an earlier VolumeConditionAbnormal Warning on claim name.
func abnormalEvent(name string) *v1.Event {
	return &v1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: "ns", Name: name + ".abnormal"},
		InvolvedObject: v1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "ns", Name: name, UID: types.UID("uid-pvc-" + name)},
		Reason:         reasonAbnormal, Type: v1.EventTypeWarning,
	}
}

// One check of every volume (checkAll), table-driven as external-attacher's
// framework_test.go: objects in a fake clientset, a scripted driver, then the
// CSI calls, events, API requests (none: the monitor only reads and emits
// events) and log lines compared with the case's. The integration tests
// (health_integration_test.go) are the proof with the plugin and the fake
// driver; these cover driver errors and answers a real driver gives rarely.
func TestCheckAllTable(t *testing.T) {
	var (
		listHealth = testutil.ControllerCaps(csi.ControllerServiceCapability_RPC_LIST_VOLUME_HEALTH)
		getHealth  = testutil.ControllerCaps(csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH)
		listLegacy = testutil.ControllerCaps(CapVolumeCondition, csi.ControllerServiceCapability_RPC_LIST_VOLUMES)
		getLegacy  = testutil.ControllerCaps(CapVolumeCondition, csi.ControllerServiceCapability_RPC_GET_VOLUME)
	)
	twoClaims := []runtime.Object{boundPV("a", tableDriver), claim("a"), boundPV("b", tableDriver), claim("b")}
	tests := []struct {
		name    string
		caps    csiconn.Capabilities
		objs    []runtime.Object
		driver  *healthCSI
		timeout time.Duration
		calls   []string // sorted
		events  []string // sorted
		logged  string   // a line the check's context logger must have
		within  time.Duration
	}{
		{
			name:   "list: the driver fails, no event at all",
			caps:   listHealth,
			objs:   twoClaims,
			driver: &healthCSI{abnormal: map[string]string{"vol-a": "disk gone"}, errs: map[string]error{"ControllerListVolumeHealth": status.Error(codes.Unavailable, "restarting")}},
			calls:  []string{"ControllerListVolumeHealth"},
			logged: "Reading volume conditions",
		},
		{
			name:   "list: the second page fails, not even the first page's abnormal volume is reported",
			caps:   listHealth,
			objs:   twoClaims,
			driver: &healthCSI{abnormal: map[string]string{"vol-a": "disk gone"}, healthy: []string{"vol-b"}, pages: 1, errs: map[string]error{"ControllerListVolumeHealth vol-b": status.Error(codes.Internal, "page lost")}},
			calls:  []string{"ControllerListVolumeHealth", "ControllerListVolumeHealth"},
			logged: "Reading volume conditions",
		},
		{
			name:   "list: abnormal is a Warning on the claim; healthy without an earlier Warning is nothing",
			caps:   listHealth,
			objs:   twoClaims,
			driver: &healthCSI{abnormal: map[string]string{"vol-a": "disk gone"}, healthy: []string{"vol-b"}, pages: 1},
			calls:  []string{"ControllerListVolumeHealth", "ControllerListVolumeHealth"},
			events: []string{"Warning " + reasonAbnormal + " disk gone"},
		},
		{
			name:   "list: healthy after an earlier Warning is a Normal recovery",
			caps:   listHealth,
			objs:   append(twoClaims, abnormalEvent("b")),
			driver: &healthCSI{healthy: []string{"vol-a", "vol-b"}},
			calls:  []string{"ControllerListVolumeHealth"},
			events: []string{"Normal " + reasonNormal + " " + recoveryMessage},
		},
		{
			name:    "list: the driver hangs, the call ends at the timeout",
			caps:    listHealth,
			objs:    twoClaims,
			driver:  &healthCSI{hang: true},
			timeout: 50 * time.Millisecond,
			within:  5 * time.Second,
			calls:   []string{"ControllerListVolumeHealth"},
			logged:  "Reading volume conditions",
		},
		{
			name:   "get: one volume fails, the other is still checked and reported",
			caps:   getHealth,
			objs:   twoClaims,
			driver: &healthCSI{abnormal: map[string]string{"vol-b": "io errors"}, errs: map[string]error{"ControllerGetVolumeHealth vol-a": status.Error(codes.NotFound, "no such volume")}},
			calls:  []string{"ControllerGetVolumeHealth", "ControllerGetVolumeHealth"},
			events: []string{"Warning " + reasonAbnormal + " io errors"},
			logged: "Reading volume condition",
		},
		{
			name: "get: only this driver's bound, live volumes are asked about",
			caps: getHealth,
			objs: []runtime.Object{boundPV("a", "other.csi.io"), claim("a"), unbound(boundPV("b", tableDriver)), deleted(boundPV("c", tableDriver)),
				boundPV("d", tableDriver), claim("d")},
			driver: &healthCSI{abnormal: map[string]string{"vol-d": "bad"}},
			calls:  []string{"ControllerGetVolumeHealth"},
			events: []string{"Warning " + reasonAbnormal + " bad"},
		},
		{
			name:   "get: the claim of a bound volume is gone, no event",
			caps:   getHealth,
			objs:   []runtime.Object{boundPV("a", tableDriver)},
			driver: &healthCSI{abnormal: map[string]string{"vol-a": "bad"}},
			calls:  []string{"ControllerGetVolumeHealth"},
			logged: "PVC of a bound PV not found",
		},
		{
			name:   "legacy list (CSI 1.12 VolumeCondition in ListVolumes): abnormal and recovered",
			caps:   listLegacy,
			objs:   append(twoClaims, abnormalEvent("b")),
			driver: &healthCSI{abnormal: map[string]string{"vol-a": "legacy broken"}, healthy: []string{"vol-b"}},
			calls:  []string{"ListVolumes"},
			events: []string{"Normal " + reasonNormal + " " + recoveryMessage, "Warning " + reasonAbnormal + " legacy broken"},
		},
		{
			name:   "legacy get: ControllerGetVolume fails for one volume",
			caps:   getLegacy,
			objs:   twoClaims,
			driver: &healthCSI{abnormal: map[string]string{"vol-a": "legacy broken"}, errs: map[string]error{"ControllerGetVolume vol-b": status.Error(codes.Internal, "boom")}},
			calls:  []string{"ControllerGetVolume", "ControllerGetVolume"},
			events: []string{"Warning " + reasonAbnormal + " legacy broken"},
			logged: "Reading volume condition",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.objs...)
			factory := informers.NewSharedInformerFactory(client, 0)
			rec := record.NewFakeRecorder(100)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			driver := tc.driver
			c, err := New(t.Context(), Deps{
				DriverConn: hub.DriverConn{Driver: tableDriver, Caps: tc.caps, CSI: driver}, Kube: client,
				PVs: factory.Core().V1().PersistentVolumes(), PVCs: factory.Core().V1().PersistentVolumeClaims(),
				Events: rec, Tuning: hub.Tuning{Workers: 2, Timeout: timeout},
			}, DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			factory.Start(ctx.Done())
			c.events.Start(ctx.Done())
			factory.WaitForCacheSync(ctx.Done())
			if !cache.WaitForCacheSync(ctx.Done(), c.abnormals.HasSynced) {
				t.Fatal("abnormal events informer did not sync")
			}
			client.ClearActions()
			ctx, logs := testutil.LogContext(t, ctx)

			start := time.Now()
			c.checkAll(ctx)
			if took := time.Since(start); tc.within > 0 && took > tc.within {
				t.Errorf("the check took %s, want at most %s", took, tc.within)
			}

			if got := testutil.APIActions(client.Actions()); len(got) != 0 {
				t.Errorf("API requests %v, want none", got)
			}
			if got := driver.methods(); !slices.Equal(got, tc.calls) {
				t.Errorf("CSI calls %v, want %v", got, tc.calls)
			}
			events := testutil.DrainEvents(rec)
			slices.Sort(events)
			if !slices.Equal(events, tc.events) {
				t.Errorf("events %q, want %q", events, tc.events)
			}
			if tc.logged != "" && len(logs.Find(tc.logged)) == 0 {
				t.Errorf("no %q line in the check's context logger:\n%s", tc.logged, logs)
			}
		})
	}
}

func unbound(pv *v1.PersistentVolume) *v1.PersistentVolume {
	pv.Status.Phase = v1.VolumeReleased
	return pv
}

func deleted(pv *v1.PersistentVolume) *v1.PersistentVolume {
	pv.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	pv.Finalizers = []string{"keep"}
	return pv
}
