package provisioner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/rpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
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

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// Table-driven sync tests of the provisioner's error paths, in the style of
// external-provisioner's controller tests: a fake clientset holding the
// objects, the fake driver (test/fakedriver, served on a socket in a temp
// directory, errors injected per case) on a real gRPC connection, one
// syncClaim, then the API requests, CSI calls, events and error compared with
// what is expected. The *_integration_test.go files on the real control
// plane stay the proof; these cover failures that are hard to produce there.

const tableDriver = "table.csi-hub.io"

// newTableProvisioner builds the provisioner on a fake clientset with synced
// informers and a fake driver without topology or attach.
func newTableProvisioner(t *testing.T, objs ...runtime.Object) (*Controller, *fake.Clientset, *fakedriver.Driver) {
	t.Helper()
	drv := fakedriver.New(fakedriver.Options{Name: tableDriver})
	dir, err := os.MkdirTemp("", "csi-hub-prov-") // short: a socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	if err := drv.Start(sock); err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); drv.StopNow(); os.RemoveAll(dir) })

	client := fake.NewClientset(objs...)
	caps := csiconn.Capabilities{
		Plugin:     rpc.PluginCapabilitySet{csi.PluginCapability_Service_CONTROLLER_SERVICE: true},
		Controller: rpc.ControllerCapabilitySet{csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME: true},
	}
	h := &hub.Hub{
		Opts:      hub.Options{RetryIntervalStart: 100 * time.Millisecond, RetryIntervalMax: time.Minute},
		Kube:      client,
		Informers: informers.NewSharedInformerFactory(client, 0),
		Conn:      &csiconn.Conn{ClientConn: cc, DriverName: tableDriver, Caps: caps},
		Driver:    tableDriver,
		Steps:     steps.NewRecorder(100),
		Events:    record.NewFakeRecorder(100),
	}
	c, err := New(t.Context(), hubDeps(h, DefaultConfig()), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h.Informers.Start(ctx.Done())
	h.Informers.WaitForCacheSync(ctx.Done())
	return c, client, drv
}

func tableClass(params map[string]string) *storagev1.StorageClass {
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast", UID: "sc-uid", ResourceVersion: "1"},
		Provisioner: tableDriver, Parameters: params}
}

// tableClaim is ns1/claim (UID uid-1) of StorageClass "fast", 1Gi, waiting
// for this driver; its volume is named pvc-uid-1.
func tableClaim() *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "claim", UID: "uid-1", ResourceVersion: "1",
			Annotations: map[string]string{annStorageProvisioner: tableDriver}},
		Spec: v1.PersistentVolumeClaimSpec{
			StorageClassName: ptrTo("fast"),
			AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}},
		},
		Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimPending},
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestSyncClaimErrorPaths(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "persistentvolumes"}, "pvc-uid-1", errors.New("RBAC says no"))
	const key = "ns1/claim"
	withSelector := tableClaim()
	withSelector.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"disk": "ssd"}}
	foreignPV := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-uid-1", ResourceVersion: "1"},
		Spec: v1.PersistentVolumeSpec{ClaimRef: &v1.ObjectReference{Namespace: "ns1", Name: "other", UID: "uid-other"}}}

	tests := []struct {
		name     string
		objs     []runtime.Object
		api      []func(*k8stesting.Fake)
		inject   map[string]codes.Code // CSI method -> error code, once
		wantErr  string
		want     []testutil.WantAction
		creates  int      // CreateVolume calls
		events   []string // prefixes, in order
		inFlight bool     // the claim must stay in flight (a volume may exist without a PV)
		check    func(t *testing.T, c *Controller, client *fake.Clientset, drv *fakedriver.Driver)
	}{
		{
			name:    "CreateVolume fails with InvalidArgument: Warning ProvisioningFailed, no PV, not retried before --retry-interval-max",
			objs:    []runtime.Object{tableClaim(), tableClass(nil)},
			inject:  map[string]codes.Code{"CreateVolume": codes.InvalidArgument},
			wantErr: "CreateVolume pvc-uid-1",
			creates: 1,
			events:  []string{"Normal Provisioning", `Warning ProvisioningFailed failed to provision volume with StorageClass "fast"`},
			check: func(t *testing.T, c *Controller, _ *fake.Clientset, _ *fakedriver.Driver) {
				if _, slow := c.slow.wait("uid-1", "sc-uid"); !slow {
					t.Error("InvalidArgument did not hold the claim back until --retry-interval-max")
				}
			},
		},
		{
			name:     "CreateVolume times out: the volume may exist, so the claim stays in flight (finished even if the PVC goes)",
			objs:     []runtime.Object{tableClaim(), tableClass(nil)},
			inject:   map[string]codes.Code{"CreateVolume": codes.DeadlineExceeded},
			wantErr:  "CreateVolume pvc-uid-1 may still be in progress, will call again with the same name",
			creates:  1,
			events:   []string{"Normal Provisioning", "Warning ProvisioningFailed"},
			inFlight: true,
		},
		{
			name:    "StorageClass missing: error for a retry, no event (kube-controller-manager reports it), no call",
			objs:    []runtime.Object{tableClaim()},
			wantErr: `StorageClass "fast" of PVC ns1/claim`,
		},
		{
			name: "provisioner secret missing: Warning event, no call",
			objs: []runtime.Object{tableClaim(), tableClass(map[string]string{
				reservedPrefix + "provisioner-secret-name": "creds", reservedPrefix + "provisioner-secret-namespace": "ns1"})},
			wantErr: "reading secret ns1/creds",
			want:    []testutil.WantAction{{Key: "get secrets ns1/creds"}},
			events:  []string{"Normal Provisioning", "Warning ProvisioningFailed"},
		},
		{
			name:    "PVC with spec.selector: Warning event, no call",
			objs:    []runtime.Object{withSelector, tableClass(nil)},
			wantErr: "spec.selector is not supported",
			events:  []string{"Normal Provisioning", "Warning ProvisioningFailed"},
		},
		{
			name:    "a PV of the volume's name belongs to another claim: refused, never overwritten, no call",
			objs:    []runtime.Object{tableClaim(), tableClass(nil), foreignPV},
			wantErr: "PersistentVolume pvc-uid-1 already exists and is not bound to this claim",
			events:  []string{"Warning ProvisioningFailed"},
		},
		{
			name:     "volume created but its PV refused: Warning naming the volume, claim in flight, the retry reuses the name and saves the PV",
			objs:     []runtime.Object{tableClaim(), tableClass(nil)},
			api:      []func(*k8stesting.Fake){refuseCreate("persistentvolumes", forbidden)},
			wantErr:  "creating PersistentVolume pvc-uid-1",
			want:     []testutil.WantAction{{Key: "create persistentvolumes pvc-uid-1"}},
			creates:  1,
			events:   []string{"Normal Provisioning", `Warning ProvisioningFailed failed to provision volume with StorageClass "fast": volume pvc-uid-1 was created (handle `},
			inFlight: true,
			check: func(t *testing.T, c *Controller, client *fake.Clientset, drv *fakedriver.Driver) {
				client.Fake.ReactionChain = client.Fake.ReactionChain[1:] // the API server accepts it now
				if err := c.syncClaim(context.Background(), key); err != nil {
					t.Fatalf("retry: %v", err)
				}
				reqs := drv.Requests("CreateVolume")
				if len(reqs) != 2 || reqs[1].(*csi.CreateVolumeRequest).GetName() != "pvc-uid-1" {
					t.Fatalf("CreateVolume requests %v, want a second one with the same name", reqs)
				}
				if _, err := client.CoreV1().PersistentVolumes().Get(context.Background(), "pvc-uid-1", metav1.GetOptions{}); err != nil {
					t.Errorf("PV after the retry: %v", err)
				}
				if c.inFlight.isPending(key) {
					t.Error("claim still in flight after its PV was saved")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, client, drv := newTableProvisioner(t, tc.objs...)
			for _, r := range tc.api {
				r(&client.Fake)
			}
			for method, code := range tc.inject {
				drv.InjectError(method, code, "injected "+code.String(), 1)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ctx, logs := testutil.LogContext(t, ctx)
			client.ClearActions()

			err := c.syncClaim(ctx, key)

			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
			}
			for _, d := range testutil.CompareActions(testutil.APIActions(client.Actions()), tc.want) {
				t.Error(d)
			}
			if n := drv.Calls("CreateVolume"); n != tc.creates {
				t.Errorf("%d CreateVolume calls, want %d", n, tc.creates)
			}
			if n := drv.Calls("DeleteVolume"); n != 0 {
				t.Errorf("%d DeleteVolume calls, want none", n)
			}
			events := testutil.DrainEvents(c.events.(*record.FakeRecorder))
			if !testutil.EventsHavePrefixes(events, tc.events) {
				t.Errorf("events %q, want %q", events, tc.events)
			}
			if busy := c.inFlight.isPending(key); busy != tc.inFlight {
				t.Errorf("claim in flight: %v, want %v", busy, tc.inFlight)
			}
			// Every failure that raised a Warning was logged through the
			// sync's context, so the worker's controller and object are on it.
			if len(events) > 0 && strings.HasPrefix(events[len(events)-1], "Warning") && len(logs.Find("Provisioning failed")) == 0 {
				t.Errorf("no 'Provisioning failed' line in the sync's context logger:\n%s", logs)
			}
			if tc.check != nil {
				tc.check(t, c, client, drv)
			}
		})
	}
}

// refuseCreate makes the fake API server refuse every create of resource.
func refuseCreate(resource string, err error) func(*k8stesting.Fake) {
	return func(f *k8stesting.Fake) {
		f.PrependReactor("create", resource, func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, err })
	}
}
