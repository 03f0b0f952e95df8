package resizer

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/rpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/internal/testutil"
)

// Table-driven sync tests of the resizer's error paths, in the style of
// external-resizer's and external-attacher's controller tests: a fake
// clientset holding the objects, a scripted CSI controller client, one sync
// of the expansion or modification sub-controller, then the API requests,
// CSI calls, events and error compared with what is expected. The
// *_integration_test.go files on the real control plane stay the proof;
// these cover failures a real driver or API server cannot easily be made to
// produce on demand.

const tableDriver = "unit.csi-hub.io"

// newTableResizer builds the resizer on a fake clientset with synced
// informers, a driver that can expand and modify, and an API server that
// serves VolumeAttributesClasses. The Pod watch of --handle-volume-inuse-error
// is off (it needs the hub's slim Pod informer).
func newTableResizer(t *testing.T, objs ...runtime.Object) (*Controller, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	client.Resources = []*metav1.APIResourceList{{GroupVersion: "storage.k8s.io/v1",
		APIResources: []metav1.APIResource{{Name: "volumeattributesclasses"}}}}
	caps := csiconn.Capabilities{
		Plugin: rpc.PluginCapabilitySet{csi.PluginCapability_Service_CONTROLLER_SERVICE: true},
		Controller: rpc.ControllerCapabilitySet{
			csi.ControllerServiceCapability_RPC_EXPAND_VOLUME: true,
			csi.ControllerServiceCapability_RPC_MODIFY_VOLUME: true,
		},
	}
	h := &hub.Hub{
		Opts:      hub.Options{RetryIntervalStart: 100 * time.Millisecond, RetryIntervalMax: time.Minute},
		Kube:      client,
		Informers: informers.NewSharedInformerFactory(client, 0),
		Conn:      &csiconn.Conn{DriverName: tableDriver, Caps: caps},
		Driver:    tableDriver,
		Steps:     steps.NewRecorder(100),
		Events:    record.NewFakeRecorder(100),
	}
	cfg := DefaultConfig()
	cfg.HandleVolumeInUseError = false
	c, err := New(t.Context(), hubDeps(h, cfg), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.expand == nil || c.modify == nil {
		t.Fatalf("resizer without expand (%v) or modify (%v)", c.expand != nil, c.modify != nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h.Informers.Start(ctx.Done())
	h.Informers.WaitForCacheSync(ctx.Done())
	return c, client
}

// tableClaim: ns1/claim, bound to pv1, asking for 2Gi with 1Gi, optionally
// for a VolumeAttributesClass.
func tableClaim(class string) *v1.PersistentVolumeClaim {
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "claim", UID: "uid-1", ResourceVersion: "1"},
		Spec: v1.PersistentVolumeClaimSpec{
			VolumeName:  "pv1",
			AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources:   v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("2Gi")}},
		},
		Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound, Capacity: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}},
	}
	if class != "" {
		// A modification test: the size is already right.
		pvc.Spec.Resources.Requests[v1.ResourceStorage] = resource.MustParse("1Gi")
		pvc.Spec.VolumeAttributesClassName = ptr.To(class)
	}
	return pvc
}

func tableVolume(secret bool) *v1.PersistentVolume {
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv1", ResourceVersion: "1"},
		Spec: v1.PersistentVolumeSpec{
			Capacity:    v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			ClaimRef:    &v1.ObjectReference{Namespace: "ns1", Name: "claim", UID: "uid-1"},
			PersistentVolumeSource: v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{
				Driver: tableDriver, VolumeHandle: "h-pv1"}},
		},
	}
	if secret {
		pv.Spec.CSI.ControllerExpandSecretRef = &v1.SecretReference{Namespace: "ns1", Name: "creds"}
	}
	return pv
}

func tableClass(name string) *storagev1.VolumeAttributesClass {
	return &storagev1.VolumeAttributesClass{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1"},
		DriverName: tableDriver, Parameters: map[string]string{"iops": "5000"}}
}

// refuse makes the fake API server answer verb on resource[/subresource] with err.
func refuse(verb, resource, subresource string, err error) func(*k8stesting.Fake) {
	return func(f *k8stesting.Fake) {
		f.PrependReactor(verb, resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() != subresource {
				return false, nil, nil
			}
			return true, nil, err
		})
	}
}

func TestSyncErrorPaths(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "x"}, "y", errors.New("RBAC says no"))
	conflict := apierrors.NewConflict(schema.GroupResource{Resource: "persistentvolumeclaims"}, "claim", errors.New("stale"))
	const (
		claimStatus = "patch persistentvolumeclaims/status ns1/claim"
		inProgress  = `"storage":"ControllerResizeInProgress"`
		allocated   = `"allocatedResources":{"storage":"2Gi"}`
	)
	tests := []struct {
		name    string
		modify  bool // sync the modification sub-controller, else the expansion one
		objs    []runtime.Object
		api     []func(*k8stesting.Fake)
		csiErr  map[string]error
		wantErr string // substring; "" means the sync returns nil (it waits for an event)
		want    []testutil.WantAction
		calls   []string
		events  []string // prefixes, in order
		logged  string   // a line the sync logs through its context logger
		check   func(t *testing.T, c *Controller)
	}{
		{
			name:    "ControllerExpandVolume fails with a final error: ControllerResizeError condition, Warning event, retried with backoff",
			objs:    []runtime.Object{tableClaim(""), tableVolume(false)},
			csiErr:  map[string]error{"ControllerExpandVolume": status.Error(codes.Internal, "backend broke")},
			wantErr: `resize volume "pv1" by resizer "unit.csi-hub.io" failed`,
			want: []testutil.WantAction{
				{Key: claimStatus, Contains: []string{inProgress, allocated, `"resourceVersion":"1"`}},
				{Key: claimStatus, Contains: []string{`"type":"ControllerResizeError"`, "backend broke"}, NotContain: []string{"Infeasible"}},
			},
			calls:  []string{"ControllerExpandVolume"},
			events: []string{"Normal Resizing", "Warning VolumeResizeFailed"},
			logged: "ControllerExpandVolume failed",
			check: func(t *testing.T, c *Controller) {
				if !c.expand.hasFinalError("ns1/claim") {
					t.Error("final error not remembered: a lowered request would not be followed")
				}
			},
		},
		{
			name:    "ControllerExpandVolume times out: only in progress recorded (the driver may still be expanding), retried with backoff",
			objs:    []runtime.Object{tableClaim(""), tableVolume(false)},
			csiErr:  map[string]error{"ControllerExpandVolume": status.Error(codes.DeadlineExceeded, "slow backend")},
			wantErr: "slow backend",
			want: []testutil.WantAction{
				{Key: claimStatus, Contains: []string{inProgress, allocated}},
			},
			calls:  []string{"ControllerExpandVolume"},
			events: []string{"Normal Resizing", "Warning VolumeResizeFailed"},
			logged: "ControllerExpandVolume failed",
			check: func(t *testing.T, c *Controller) {
				if c.expand.hasFinalError("ns1/claim") {
					t.Error("an uncertain error was taken as final")
				}
			},
		},
		{
			name:    "ControllerExpandVolume says OutOfRange: ControllerResizeInfeasible, slow retry instead of backoff",
			objs:    []runtime.Object{tableClaim(""), tableVolume(false)},
			csiErr:  map[string]error{"ControllerExpandVolume": status.Error(codes.OutOfRange, "too big")},
			wantErr: "requeue after",
			want: []testutil.WantAction{
				{Key: claimStatus, Contains: []string{inProgress}},
				{Key: claimStatus, Contains: []string{`"storage":"ControllerResizeInfeasible"`, "too big"}},
			},
			calls:  []string{"ControllerExpandVolume"},
			events: []string{"Normal Resizing", "Warning VolumeResizeFailed"},
			check: func(t *testing.T, c *Controller) {
				if _, slow := c.expand.slow.wait("ns1/claim"); !slow {
					t.Error("infeasible claim not held for the slow retry")
				}
			},
		},
		{
			name:    "bound PV not in the cache yet: error for a retry, nothing written, no call",
			objs:    []runtime.Object{tableClaim("")},
			wantErr: "PV pv1 bound to PVC ns1/claim not found (yet)",
		},
		{
			name:    "marking the claim in progress conflicts: quiet short requeue, no call, no event",
			objs:    []runtime.Object{tableClaim(""), tableVolume(false)},
			api:     []func(*k8stesting.Fake){refuse("patch", "persistentvolumeclaims", "status", conflict)},
			wantErr: "requeue after 100ms",
			want:    []testutil.WantAction{{Key: claimStatus, Contains: []string{inProgress}}},
		},
		{
			name:    "marking the claim in progress refused: Warning event, no call",
			objs:    []runtime.Object{tableClaim(""), tableVolume(false)},
			api:     []func(*k8stesting.Fake){refuse("patch", "persistentvolumeclaims", "status", forbidden)},
			wantErr: "marking PVC ns1/claim as resizing",
			want:    []testutil.WantAction{{Key: claimStatus}},
			events:  []string{"Warning VolumeResizeFailed"},
		},
		{
			name:    "controllerExpandSecretRef names a missing Secret: final error recorded, no call",
			objs:    []runtime.Object{tableClaim(""), tableVolume(true)},
			wantErr: "spec.csi.controllerExpandSecretRef: reading secret ns1/creds",
			want: []testutil.WantAction{
				{Key: claimStatus, Contains: []string{inProgress}},
				{Key: "get secrets ns1/creds"},
				{Key: claimStatus, Contains: []string{`"type":"ControllerResizeError"`, "controllerExpandSecretRef"}},
			},
			events: []string{"Normal Resizing", "Warning VolumeResizeFailed"},
		},
		{
			name:    "expanded, but writing the PV's capacity fails: Warning event, error for a retry",
			objs:    []runtime.Object{tableClaim(""), tableVolume(false)},
			api:     []func(*k8stesting.Fake){refuse("patch", "persistentvolumes", "", forbidden)},
			wantErr: "updating capacity of PV pv1 to 2Gi",
			want: []testutil.WantAction{
				{Key: claimStatus, Contains: []string{inProgress}},
				{Key: "patch persistentvolumes pv1", Contains: []string{`"capacity":{"storage":"2Gi"}`}},
			},
			calls:  []string{"ControllerExpandVolume"},
			events: []string{"Normal Resizing", "Warning VolumeResizeFailed"},
		},
		{
			name:    "ControllerModifyVolume says InvalidArgument: Infeasible, Warning event, slow retry",
			modify:  true,
			objs:    []runtime.Object{tableClaim("gold"), tableVolume(false), tableClass("gold")},
			csiErr:  map[string]error{"ControllerModifyVolume": status.Error(codes.InvalidArgument, "iops not supported")},
			wantErr: "requeue after",
			want: []testutil.WantAction{
				{Key: claimStatus, Contains: []string{`"status":"InProgress"`, `"targetVolumeAttributesClassName":"gold"`}},
				{Key: claimStatus, Contains: []string{`"status":"Infeasible"`, `"type":"ModifyVolumeError"`, "iops not supported"}},
			},
			calls:  []string{"ControllerModifyVolume"},
			events: []string{"Normal VolumeModify", "Warning VolumeModifyFailed"},
			logged: "ControllerModifyVolume failed",
		},
		{
			name:    "ControllerModifyVolume unavailable: stays InProgress with the error, retried with backoff",
			modify:  true,
			objs:    []runtime.Object{tableClaim("gold"), tableVolume(false), tableClass("gold")},
			csiErr:  map[string]error{"ControllerModifyVolume": status.Error(codes.Unavailable, "driver restarting")},
			wantErr: "driver restarting",
			want: []testutil.WantAction{
				{Key: claimStatus, Contains: []string{`"status":"InProgress"`}},
				{Key: claimStatus, Contains: []string{`"type":"ModifyVolumeError"`, "driver restarting"}, NotContain: []string{"Infeasible"}},
			},
			calls:  []string{"ControllerModifyVolume"},
			events: []string{"Normal VolumeModify", "Warning VolumeModifyFailed"},
			logged: "ControllerModifyVolume failed",
		},
		{
			// Not retried: adding the class wakes the claim up (classAdded).
			name:   "VolumeAttributesClass missing: Pending, Warning event, no call",
			modify: true,
			objs:   []runtime.Object{tableClaim("silver"), tableVolume(false)},
			want: []testutil.WantAction{
				{Key: claimStatus, Contains: []string{`"status":"Pending"`, `"targetVolumeAttributesClassName":"silver"`}},
			},
			events: []string{`Warning VolumeModifyFailed VAC "silver" does not exist.`},
		},
		{
			name:    "modified, but writing the PV's class fails: Warning event, error for a retry",
			modify:  true,
			objs:    []runtime.Object{tableClaim("gold"), tableVolume(false), tableClass("gold")},
			api:     []func(*k8stesting.Fake){refuse("patch", "persistentvolumes", "", forbidden)},
			wantErr: "setting spec.volumeAttributesClassName of PV pv1 to gold",
			want: []testutil.WantAction{
				{Key: claimStatus, Contains: []string{`"status":"InProgress"`}},
				{Key: "patch persistentvolumes pv1", Contains: []string{`"volumeAttributesClassName":"gold"`}},
			},
			calls:  []string{"ControllerModifyVolume"},
			events: []string{"Normal VolumeModify", "Warning VolumeModifyFailed"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, client := newTableResizer(t, tc.objs...)
			for _, r := range tc.api {
				r(&client.Fake)
			}
			fake := &testutil.CSIController{}
			for method, err := range tc.csiErr {
				fake.Fail(method, err)
			}
			c.csi = fake
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ctx, logs := testutil.LogContext(t, ctx)
			client.ClearActions()

			var err error
			if tc.modify {
				err = c.modify.sync(ctx, "ns1/claim")
			} else {
				err = c.expand.sync(ctx, "ns1/claim")
			}

			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
			}
			for _, d := range testutil.CompareActions(testutil.APIActions(client.Actions()), tc.want) {
				t.Error(d)
			}
			if got := fake.Methods(); !slices.Equal(got, tc.calls) {
				t.Errorf("CSI calls %v, want %v", got, tc.calls)
			}
			events := testutil.DrainEvents(c.d.Events.(*record.FakeRecorder))
			if !testutil.EventsHavePrefixes(events, tc.events) {
				t.Errorf("events %q, want %q", events, tc.events)
			}
			if tc.logged != "" && len(logs.Find(tc.logged)) == 0 {
				t.Errorf("no %q line in the sync's context logger:\n%s", tc.logged, logs)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}
