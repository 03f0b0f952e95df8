package attacher

import (
	"context"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/rpc"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/edit"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
)

const unitDriver = "unit.csi-hub.io"

// newUnitController builds the attacher on a fake clientset with synced
// informers. It has no driver connection: these tests cover paths that end
// before any CSI call.
func newUnitController(t *testing.T, publish bool, opts hub.Options, cfg Config, objs ...runtime.Object) (*Controller, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	caps := csiconn.Capabilities{
		Plugin:     rpc.PluginCapabilitySet{csi.PluginCapability_Service_CONTROLLER_SERVICE: true},
		Controller: rpc.ControllerCapabilitySet{csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME: publish},
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	// The hub's informer factory only, for its VolumeAttachment index.
	parts := &hub.Hub{Opts: opts, Informers: factory}
	vaByPV, err := parts.AttachmentsByPV()
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(t.Context(), Deps{
		DriverConn: hub.DriverConn{Driver: unitDriver, Caps: caps},
		Kube:       client,
		VAs:        factory.Storage().V1().VolumeAttachments(),
		PVs:        factory.Core().V1().PersistentVolumes(),
		CSINodes:   factory.Storage().V1().CSINodes(),
		VAsByPV:    vaByPV,
		Events:     record.NewFakeRecorder(100),
		Work: hub.Work{Steps: steps.NewRecorder(100), NewQueue: parts.NewQueue,
			Tuning: opts.Tune(hub.Tuning{Workers: cfg.WorkerThreads, Timeout: cfg.Timeout}, Defaults)},
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return c, client
}

func unitPV(name string, deleting bool, finalizers ...string) *v1.PersistentVolume {
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1", Finalizers: finalizers},
		Spec: v1.PersistentVolumeSpec{
			AccessModes:            []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeSource: v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: unitDriver, VolumeHandle: "h-" + name}},
		},
	}
	if deleting {
		pv.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	}
	return pv
}

func unitVA(name, pv string, deleting bool, finalizers ...string) *storagev1.VolumeAttachment {
	va := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1", Finalizers: finalizers},
		Spec: storagev1.VolumeAttachmentSpec{
			Attacher: unitDriver, NodeName: "node-1",
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To(pv)},
		},
	}
	if deleting {
		va.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	}
	return va
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestConfigFlagsAndFallbacks(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse([]string{"--reconcile-sync=5s", "--max-entries=7", "--attacher-default-fstype=xfs"}); err != nil {
		t.Fatal(err)
	}
	if cfg.ReconcileSync != 5*time.Second || cfg.MaxEntries != 7 || cfg.DefaultFSType != "xfs" {
		t.Errorf("parsed config %+v", cfg)
	}
	// Unset: the sidecar's defaults.
	c, _ := newUnitController(t, true, hub.Options{}, cfg)
	if c.d.Workers != DefaultWorkerThreads || c.d.Timeout != DefaultTimeout {
		t.Errorf("defaults: workers %d timeout %s", c.d.Workers, c.d.Timeout)
	}
	// Unset with global overrides: the globals.
	c, _ = newUnitController(t, true, hub.Options{WorkerThreads: 4, Timeout: 3 * time.Second}, cfg)
	if c.d.Workers != 4 || c.d.Timeout != 3*time.Second {
		t.Errorf("globals: workers %d timeout %s", c.d.Workers, c.d.Timeout)
	}
	// Own settings (--attacher-worker-threads, --attacher-timeout) win.
	cfg.WorkerThreads, cfg.Timeout = 2, 9*time.Second
	c, _ = newUnitController(t, true, hub.Options{WorkerThreads: 4, Timeout: 3 * time.Second}, cfg)
	if c.d.Workers != 2 || c.d.Timeout != 9*time.Second {
		t.Errorf("own flags: workers %d timeout %s", c.d.Workers, c.d.Timeout)
	}
	for _, bad := range []Config{{ReconcileSync: 0}, {ReconcileSync: time.Second, MaxEntries: -1}} {
		if err := bad.validate(); err == nil || !strings.Contains(err.Error(), "--") {
			t.Errorf("config %+v: err %v, want one naming the flag", bad, err)
		}
	}
}

func TestAttachRefusesPVBeingDeleted(t *testing.T) {
	c, client := newUnitController(t, true, hub.Options{}, DefaultConfig(),
		unitPV("pv1", true, "kubernetes.io/pv-protection"), unitVA("va1", "pv1", false))
	err := c.syncVA(ctx(t), "va1")
	if err == nil || !strings.Contains(err.Error(), "being deleted") {
		t.Fatalf("err = %v, want a refusal naming the deletion", err)
	}
	va, _ := client.StorageV1().VolumeAttachments().Get(ctx(t), "va1", metav1.GetOptions{})
	if va.Status.AttachError == nil || !strings.Contains(va.Status.AttachError.Message, `PersistentVolume "pv1" is being deleted`) {
		t.Errorf("attachError = %+v", va.Status.AttachError)
	}
	if len(va.Finalizers) != 0 {
		t.Errorf("finalizer added to a VolumeAttachment that cannot attach: %v", va.Finalizers)
	}
	events := c.d.Events.(*record.FakeRecorder).Events
	select {
	case ev := <-events:
		if !strings.HasPrefix(ev, "Warning AttachFailed") {
			t.Errorf("event %q", ev)
		}
	default:
		t.Error("no Warning event emitted")
	}
}

func TestMissingCSINodeLeavesNoVAFinalizer(t *testing.T) {
	c, client := newUnitController(t, true, hub.Options{}, DefaultConfig(), unitPV("pv1", false), unitVA("va1", "pv1", false))
	err := c.syncVA(ctx(t), "va1")
	if err == nil || !strings.Contains(err.Error(), `CSINode "node-1" not found`) {
		t.Fatalf("err = %v", err)
	}
	va, _ := client.StorageV1().VolumeAttachments().Get(ctx(t), "va1", metav1.GetOptions{})
	if len(va.Finalizers) != 0 || va.Status.AttachError == nil {
		t.Errorf("VolumeAttachment finalizers %v attachError %+v", va.Finalizers, va.Status.AttachError)
	}
	pv, _ := client.CoreV1().PersistentVolumes().Get(ctx(t), "pv1", metav1.GetOptions{})
	if !slices.Contains(pv.Finalizers, FinalizerName(unitDriver)) {
		t.Errorf("PV finalizer not added before the node lookup (as upstream): %v", pv.Finalizers)
	}
}

func TestNodeIDFallsBackToAnnotation(t *testing.T) {
	c, _ := newUnitController(t, true, hub.Options{}, DefaultConfig())
	va := unitVA("va1", "pv1", true)
	va.Annotations = map[string]string{NodeIDAnnotation: "remembered"}
	if id, err := c.nodeID("node-1", va); err != nil || id != "remembered" {
		t.Errorf("nodeID with annotation = %q, %v", id, err)
	}
	if _, err := c.nodeID("node-1", nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("nodeID without CSINode or annotation: %v", err)
	}
}

func TestTrivialModeReleasesLeftoverFinalizer(t *testing.T) {
	f := FinalizerName(unitDriver)
	c, client := newUnitController(t, false, hub.Options{}, DefaultConfig(),
		unitPV("pv1", false), unitVA("gone", "pv1", true, f, "other/keep"), unitVA("new", "pv1", false))
	for _, name := range []string{"gone", "new"} {
		if err := c.syncVA(ctx(t), name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	gone, _ := client.StorageV1().VolumeAttachments().Get(ctx(t), "gone", metav1.GetOptions{})
	if !slices.Equal(gone.Finalizers, []string{"other/keep"}) {
		t.Errorf("finalizers after trivial detach = %v, want only the foreign one", gone.Finalizers)
	}
	fresh, _ := client.StorageV1().VolumeAttachments().Get(ctx(t), "new", metav1.GetOptions{})
	if !fresh.Status.Attached || len(fresh.Finalizers) != 0 {
		t.Errorf("trivial attach: attached %v finalizers %v", fresh.Status.Attached, fresh.Finalizers)
	}
}

func TestSyncPVReleasesFinalizerOnlyWhenUnused(t *testing.T) {
	f := FinalizerName(unitDriver)
	c, client := newUnitController(t, true, hub.Options{}, DefaultConfig(),
		unitPV("used", true, f), unitVA("va1", "used", false),
		unitPV("free", true, f, "kubernetes.io/pv-protection"),
		unitPV("alive", false, f))
	for _, name := range []string{"used", "free", "alive"} {
		if err := c.syncPV(ctx(t), name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for name, want := range map[string][]string{
		"used":  {f},                             // a VolumeAttachment still needs its volume handle
		"free":  {"kubernetes.io/pv-protection"}, // being deleted, unused: released
		"alive": {f},                             // not being deleted: kept, as upstream
	} {
		pv, _ := client.CoreV1().PersistentVolumes().Get(ctx(t), name, metav1.GetOptions{})
		if !slices.Equal(pv.Finalizers, want) {
			t.Errorf("PV %s finalizers = %v, want %v", name, pv.Finalizers, want)
		}
	}
}

// TestFinalizerPatchesKeepOthersFinalizers: a stale copy must never drop a
// finalizer someone else added meanwhile; strategic merge patches touch only ours.
func TestFinalizerPatchesKeepOthersFinalizers(t *testing.T) {
	f := FinalizerName(unitDriver)
	c, client := newUnitController(t, true, hub.Options{}, DefaultConfig(), unitPV("pv1", false, "first/keep"))
	stale, _ := c.pvLister.Get("pv1")
	live := stale.DeepCopy()
	live.Finalizers = append(live.Finalizers, "added/meanwhile")
	if _, err := client.CoreV1().PersistentVolumes().Update(ctx(t), live, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.patchPVMeta(ctx(t), stale, edit.AddFinalizer(f)); err != nil {
		t.Fatal(err)
	}
	pv, _ := client.CoreV1().PersistentVolumes().Get(ctx(t), "pv1", metav1.GetOptions{})
	if got := slices.Sorted(slices.Values(pv.Finalizers)); !slices.Equal(got, []string{"added/meanwhile", f, "first/keep"}) {
		t.Errorf("after add: %v", pv.Finalizers)
	}
	if _, err := c.patchPVMeta(ctx(t), pv, edit.RemoveFinalizer(f)); err != nil {
		t.Fatal(err)
	}
	pv, _ = client.CoreV1().PersistentVolumes().Get(ctx(t), "pv1", metav1.GetOptions{})
	if got := slices.Sorted(slices.Values(pv.Finalizers)); !slices.Equal(got, []string{"added/meanwhile", "first/keep"}) {
		t.Errorf("after remove: %v", pv.Finalizers)
	}
}

func TestSkipsVolumeAttachmentsOfOtherDrivers(t *testing.T) {
	other := unitVA("other", "pv1", false)
	other.Spec.Attacher = "someone.else"
	c, client := newUnitController(t, true, hub.Options{}, DefaultConfig(), other)
	if err := c.syncVA(ctx(t), "other"); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "list" && a.GetVerb() != "watch" {
			t.Errorf("unexpected request %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}
