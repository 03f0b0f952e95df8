package attacher

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/testutil"
)

// Table-driven sync tests of the attacher's error paths, in the style of
// external-attacher's pkg/controller tests: a fake clientset holding the
// objects, a scripted CSI controller client, one syncVA call, then the API
// requests, CSI calls, events and error compared with what is expected. The
// real control plane tests (*_integration_test.go) stay the proof of the
// happy paths; these cover the failures a real driver or API server cannot
// easily be made to produce on demand.

const tableNodeID = "node-id-1"

func tableCSINode(drivers ...string) *storagev1.CSINode {
	n := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: "node-1", ResourceVersion: "1"}}
	for _, d := range drivers {
		n.Spec.Drivers = append(n.Spec.Drivers, storagev1.CSINodeDriver{Name: d, NodeID: tableNodeID})
	}
	return n
}

func withSecretRef(pv *v1.PersistentVolume) *v1.PersistentVolume {
	pv.Spec.CSI.ControllerPublishSecretRef = &v1.SecretReference{Namespace: "ns1", Name: "creds"}
	return pv
}

func withNodeIDAnnotation(va *storagev1.VolumeAttachment) *storagev1.VolumeAttachment {
	va.Annotations = map[string]string{NodeIDAnnotation: tableNodeID}
	return va
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

var errForbidden = apierrors.NewForbidden(schema.GroupResource{Resource: "x"}, "y", errors.New("RBAC says no"))

func TestSyncVAErrorPaths(t *testing.T) {
	fin := FinalizerName(unitDriver)
	finalizerPatch := `"finalizers":["` + fin + `"]`
	nodeIDPatch := `"` + NodeIDAnnotation + `":"` + tableNodeID + `"`
	tests := []struct {
		name    string
		objs    []runtime.Object
		api     []func(*k8stesting.Fake)                                    // reactors: API errors
		csiErr  map[string]error                                            // scripted CSI answers
		cancel  bool                                                        // the sync's context ends during the CSI call
		wantErr string                                                      // substring; every case here fails
		want    []testutil.WantAction                                       // API requests, in order
		calls   []string                                                    // CSI calls, in order
		events  []string                                                    // event prefixes, in order
		logged  string                                                      // a line the sync logs through its context
		check   func(t *testing.T, calls []testutil.CSICall, c *Controller) // extra checks
	}{
		{
			name:    "ControllerPublish fails with a final error: attachError and a Warning event",
			objs:    []runtime.Object{unitPV("pv1", false), unitVA("va1", "pv1", false), tableCSINode(unitDriver)},
			csiErr:  map[string]error{"ControllerPublishVolume": status.Error(codes.InvalidArgument, "bad capability")},
			wantErr: "ControllerPublishVolume of volume h-pv1 to node node-id-1",
			want: []testutil.WantAction{
				{Key: "patch persistentvolumes pv1", Contains: []string{finalizerPatch}},
				{Key: "patch volumeattachments va1", Contains: []string{finalizerPatch, nodeIDPatch}},
				{Key: "patch volumeattachments/status va1", Contains: []string{`"attachError":{`, "bad capability", `"errorCode":3`, `"attached":false`}},
			},
			calls:  []string{"ControllerPublishVolume"},
			events: []string{"Warning AttachFailed"},
			check: func(t *testing.T, calls []testutil.CSICall, _ *Controller) {
				if id := calls[0].Request.(interface{ GetNodeId() string }).GetNodeId(); id != tableNodeID {
					t.Errorf("published to node ID %q, want the CSINode's %q", id, tableNodeID)
				}
			},
		},
		{
			// As external-attacher: every failed attach is saved, so kubelet and
			// kube-controller-manager show it; the sync is retried with backoff.
			name:    "ControllerPublish times out: recorded the same way, with its code, and retried",
			objs:    []runtime.Object{unitPV("pv1", false), unitVA("va1", "pv1", false), tableCSINode(unitDriver)},
			csiErr:  map[string]error{"ControllerPublishVolume": status.Error(codes.DeadlineExceeded, "backend slow")},
			wantErr: "backend slow",
			want: []testutil.WantAction{
				{Key: "patch persistentvolumes pv1"},
				{Key: "patch volumeattachments va1"},
				{Key: "patch volumeattachments/status va1", Contains: []string{"backend slow", `"errorCode":4`}},
			},
			calls:  []string{"ControllerPublishVolume"},
			events: []string{"Warning AttachFailed"},
		},
		{
			name:    "shutdown during ControllerPublish: no error recorded, no event",
			objs:    []runtime.Object{unitPV("pv1", false), unitVA("va1", "pv1", false), tableCSINode(unitDriver)},
			csiErr:  map[string]error{"ControllerPublishVolume": status.Error(codes.Canceled, "context canceled")},
			cancel:  true,
			wantErr: "context canceled",
			want: []testutil.WantAction{
				{Key: "patch persistentvolumes pv1"},
				{Key: "patch volumeattachments va1"},
			},
			calls: []string{"ControllerPublishVolume"},
		},
		{
			name:    "CSINode missing: attachError, no CSI call, no VolumeAttachment finalizer",
			objs:    []runtime.Object{unitPV("pv1", false), unitVA("va1", "pv1", false)},
			wantErr: `CSINode "node-1" not found`,
			want: []testutil.WantAction{
				{Key: "patch persistentvolumes pv1", Contains: []string{finalizerPatch}},
				{Key: "patch volumeattachments/status va1", Contains: []string{`CSINode \"node-1\" not found`}},
			},
			events: []string{"Warning AttachFailed"},
		},
		{
			name:    "CSINode without this driver: attachError, no CSI call",
			objs:    []runtime.Object{unitPV("pv1", false), unitVA("va1", "pv1", false), tableCSINode("other.csi.io")},
			wantErr: "does not list driver " + unitDriver,
			want: []testutil.WantAction{
				{Key: "patch persistentvolumes pv1"},
				{Key: "patch volumeattachments/status va1", Contains: []string{"has not registered"}},
			},
			events: []string{"Warning AttachFailed"},
		},
		{
			name:    "PersistentVolume missing: attachError, nothing else written",
			objs:    []runtime.Object{unitVA("va1", "pv1", false), tableCSINode(unitDriver)},
			wantErr: `PersistentVolume "pv1" of spec.source.persistentVolumeName`,
			want: []testutil.WantAction{
				{Key: "patch volumeattachments/status va1", Contains: []string{`"attachError":{`}},
			},
			events: []string{"Warning AttachFailed"},
		},
		{
			name:    "controllerPublishSecretRef names a missing Secret: attachError, no CSI call",
			objs:    []runtime.Object{withSecretRef(unitPV("pv1", false)), unitVA("va1", "pv1", false), tableCSINode(unitDriver)},
			wantErr: "controllerPublishSecretRef: reading secret ns1/creds",
			want: []testutil.WantAction{
				{Key: "patch persistentvolumes pv1"},
				{Key: "get secrets ns1/creds"},
				{Key: "patch volumeattachments/status va1", Contains: []string{"controllerPublishSecretRef"}},
			},
			events: []string{"Warning AttachFailed"},
		},
		{
			name:    "PV finalizer refused by the API server: no CSI call, attachError",
			objs:    []runtime.Object{unitPV("pv1", false), unitVA("va1", "pv1", false), tableCSINode(unitDriver)},
			api:     []func(*k8stesting.Fake){refuse("patch", "persistentvolumes", "", errForbidden)},
			wantErr: "adding finalizer " + fin + ` to PersistentVolume "pv1"`,
			want: []testutil.WantAction{
				{Key: "patch persistentvolumes pv1"},
				{Key: "patch volumeattachments/status va1", Contains: []string{"RBAC says no"}},
			},
			events: []string{"Warning AttachFailed"},
		},
		{
			name:    "ControllerPublish fails and saving the error fails too: logged with the object, event still sent",
			objs:    []runtime.Object{unitPV("pv1", false), unitVA("va1", "pv1", false), tableCSINode(unitDriver)},
			api:     []func(*k8stesting.Fake){refuse("patch", "volumeattachments", "status", errForbidden)},
			csiErr:  map[string]error{"ControllerPublishVolume": status.Error(codes.Internal, "backend broke")},
			wantErr: "backend broke",
			want: []testutil.WantAction{
				{Key: "patch persistentvolumes pv1"},
				{Key: "patch volumeattachments va1"},
				{Key: "patch volumeattachments/status va1", Contains: []string{"backend broke"}},
			},
			calls:  []string{"ControllerPublishVolume"},
			events: []string{"Warning AttachFailed"},
			logged: "Saving the error in the VolumeAttachment status failed",
		},
		{
			// The volume is published; the next sync publishes again
			// (idempotent) and writes the status then.
			name:    "published, but writing attached=true fails: error for a retry, no event",
			objs:    []runtime.Object{unitPV("pv1", false), unitVA("va1", "pv1", false), tableCSINode(unitDriver)},
			api:     []func(*k8stesting.Fake){refuse("patch", "volumeattachments", "status", errForbidden)},
			wantErr: "marking as attached",
			want: []testutil.WantAction{
				{Key: "patch persistentvolumes pv1"},
				{Key: "patch volumeattachments va1"},
				{Key: "patch volumeattachments/status va1", Contains: []string{`"attached":true`, `"devicePath":"/dev/fake-h-pv1"`}},
			},
			calls: []string{"ControllerPublishVolume"},
			check: func(t *testing.T, _ []testutil.CSICall, c *Controller) {
				if c.stale.isStale("va1", "1") {
					t.Error("a failed sync left the VolumeAttachment marked stale: the retry would wait for an update that never comes")
				}
			},
		},
		{
			name:    "ControllerUnpublish fails with a final error: detachError, Warning event, finalizer kept",
			objs:    []runtime.Object{unitPV("pv1", false, fin), withNodeIDAnnotation(unitVA("va1", "pv1", true, fin)), tableCSINode(unitDriver)},
			csiErr:  map[string]error{"ControllerUnpublishVolume": status.Error(codes.FailedPrecondition, "volume busy")},
			wantErr: "ControllerUnpublishVolume of volume h-pv1 from node node-id-1",
			want: []testutil.WantAction{
				{Key: "patch volumeattachments/status va1", Contains: []string{`"detachError":{`, "volume busy", `"errorCode":9`}, NotContain: []string{"finalizers"}},
			},
			calls:  []string{"ControllerUnpublishVolume"},
			events: []string{"Warning DetachFailed"},
		},
		{
			name:    "detach with neither CSINode nor node-ID annotation: detachError, no CSI call",
			objs:    []runtime.Object{unitPV("pv1", false, fin), unitVA("va1", "pv1", true, fin)},
			wantErr: `CSINode "node-1" not found`,
			want: []testutil.WantAction{
				{Key: "patch volumeattachments/status va1", Contains: []string{`"detachError":{`}},
			},
			events: []string{"Warning DetachFailed"},
		},
		{
			name:    "unpublished, but removing the finalizer fails: error for a retry, no event",
			objs:    []runtime.Object{unitPV("pv1", false, fin), withNodeIDAnnotation(unitVA("va1", "pv1", true, fin))},
			api:     []func(*k8stesting.Fake){refuse("patch", "volumeattachments", "", errForbidden)},
			wantErr: "marking as detached",
			want: []testutil.WantAction{
				{Key: "patch volumeattachments va1", Contains: []string{`"$deleteFromPrimitiveList/finalizers":["` + fin + `"]`}},
			},
			calls: []string{"ControllerUnpublishVolume"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, client := newUnitController(t, true, hub.Options{}, DefaultConfig(), tc.objs...)
			for _, r := range tc.api {
				r(&client.Fake)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ctx, logs := testutil.LogContext(t, ctx)
			fake := &testutil.CSIController{}
			if tc.cancel {
				fake.Before = func(string) { cancel() }
			}
			for method, err := range tc.csiErr {
				fake.Fail(method, err)
			}
			c.csi = fake
			client.ClearActions()

			err := c.syncVA(ctx, "va1")

			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
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
				tc.check(t, fake.Calls(), c)
			}
		})
	}
}
