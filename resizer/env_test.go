package resizer

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// env is one integration test's world: the shared cluster, a namespace, a
// fake driver with a name of its own (so the hubs of other tests ignore its
// volumes), a StorageClass that allows expansion, and a csi-hub running the
// resizer against both.
type env struct {
	t      testing.TB
	ctx    context.Context
	c      *cluster.Cluster
	kube   kubernetes.Interface
	ns     string
	driver string
	socket string
	sc     string
	drv    *fakedriver.Driver
	hub    *hubtest.Running
	ctrl   *Controller
	cfg    Config
	opts   hub.Options
}

type envOption func(*env)

// withHubOptions changes the hub's options (e.g. retry intervals) before it starts.
func withHubOptions(f func(*hub.Options)) envOption { return func(e *env) { f(&e.opts) } }

func newEnv(t testing.TB, opts fakedriver.Options, cfg Config, eopts ...envOption) *env {
	t.Helper()
	c := cluster.Shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ns, err := c.CreateNamespace(ctx, "rsz")
	if err != nil {
		t.Fatal(err)
	}
	opts.Name = testutil.ShortName(t) + ".fake.csi-hub.io"
	e := &env{t: t, ctx: ctx, c: c, kube: c.Client, ns: ns, driver: opts.Name, cfg: cfg,
		socket: filepath.Join(t.TempDir(), "csi.sock"), drv: fakedriver.New(opts)}
	e.opts = hubtest.Options(e.socket)
	for _, o := range eopts {
		o(e)
	}
	if err := e.drv.Start(e.socket); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.drv.StopNow)
	e.sc = e.storageClass()
	e.startHub()
	return e
}

func (e *env) startHub() {
	e.t.Helper()
	e.hub = hubtest.Start(e.t, e.c.RESTConfig(), e.opts, func(h *hub.Hub) error {
		ctrl, err := New(e.t.Context(), hubDeps(h, e.cfg), e.cfg)
		if err != nil {
			return err
		}
		e.ctrl = ctrl
		h.Add(ctrl)
		return nil
	})
}

func (e *env) storageClass() string {
	e.t.Helper()
	yes := true
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-expandable"}, Provisioner: e.driver,
		AllowVolumeExpansion: &yes}
	if _, err := e.kube.StorageV1().StorageClasses().Create(e.ctx, sc, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.kube.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
	})
	return sc.Name
}

type volOption func(*v1.PersistentVolume, *v1.PersistentVolumeClaim)

// withDriver makes the PV another driver's.
func withDriver(name string) volOption {
	return func(pv *v1.PersistentVolume, _ *v1.PersistentVolumeClaim) { pv.Spec.CSI.Driver = name }
}

func withExpandSecret(ns, name string) volOption {
	return func(pv *v1.PersistentVolume, _ *v1.PersistentVolumeClaim) {
		pv.Spec.CSI.ControllerExpandSecretRef = &v1.SecretReference{Namespace: ns, Name: name}
	}
}

func withBlock() volOption {
	return func(pv *v1.PersistentVolume, pvc *v1.PersistentVolumeClaim) {
		m := v1.PersistentVolumeBlock
		pv.Spec.VolumeMode, pvc.Spec.VolumeMode = &m, &m
	}
}

// boundVolume creates a volume in the fake backend and a PV + PVC pre-bound
// to each other, and waits until kube-controller-manager has bound them.
func (e *env) boundVolume(name, size string, opts ...volOption) (*v1.PersistentVolumeClaim, *v1.PersistentVolume) {
	e.t.Helper()
	q := resource.MustParse(size)
	id, err := e.drv.AddVolume(fakedriver.Volume{Name: e.ns + "-" + name, CapacityBytes: q.Value()})
	if err != nil {
		e.t.Fatal(err)
	}
	fs := v1.PersistentVolumeFilesystem
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-" + name},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: q},
			AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain,
			StorageClassName:              e.sc,
			VolumeMode:                    &fs,
			ClaimRef:                      &v1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: e.ns, Name: name},
			PersistentVolumeSource: v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{
				Driver: e.driver, VolumeHandle: id, FSType: "ext4"}},
		},
	}
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			StorageClassName: &e.sc,
			VolumeName:       pv.Name,
			VolumeMode:       &fs,
			Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: q}},
		},
	}
	for _, o := range opts {
		o(pv, pvc)
	}
	if _, err := e.kube.CoreV1().PersistentVolumes().Create(e.ctx, pv, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.kube.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	if _, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx, pvc, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.eventually(60*time.Second, "PV and PVC "+name+" to be bound", func() (bool, error) {
		c, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil || c.Status.Phase != v1.ClaimBound {
			return false, nil
		}
		v, err := e.kube.CoreV1().PersistentVolumes().Get(e.ctx, pv.Name, metav1.GetOptions{})
		if err != nil || v.Status.Phase != v1.VolumeBound || v.Spec.ClaimRef.UID != c.UID {
			return false, nil
		}
		pvc, pv = c, v
		return true, nil
	})
	return pvc, pv
}

// eventually polls cond until it holds; an error from cond fails the test.
func (e *env) eventually(timeout time.Duration, what string, cond func() (bool, error)) {
	e.t.Helper()
	testutil.Eventually(e.t, e.ctx, timeout, what, cond)
}

func (e *env) pvc(name string) *v1.PersistentVolumeClaim {
	e.t.Helper()
	pvc, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pvc
}

func (e *env) pv(name string) *v1.PersistentVolume {
	e.t.Helper()
	pv, err := e.kube.CoreV1().PersistentVolumes().Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pv
}

// waitPVC polls the PVC until cond holds, and returns it.
func (e *env) waitPVC(name, what string, cond func(*v1.PersistentVolumeClaim) bool) *v1.PersistentVolumeClaim {
	e.t.Helper()
	var out *v1.PersistentVolumeClaim
	e.eventually(30*time.Second, "PVC "+name+": "+what, func() (bool, error) {
		pvc, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		out = pvc
		return cond(pvc), nil
	})
	return out
}

// request sets the PVC's storage request, as a user editing the PVC would.
func (e *env) request(name, size string) {
	e.t.Helper()
	patch := fmt.Sprintf(`{"spec":{"resources":{"requests":{"storage":%q}}}}`, size)
	if _, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Patch(e.ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		e.t.Fatalf("setting PVC %s request to %s: %v", name, size, err)
	}
}

// setClass sets (or with "" removes) the PVC's spec.volumeAttributesClassName.
func (e *env) setClass(name, class string) error {
	patch := `{"spec":{"volumeAttributesClassName":null}}`
	if class != "" {
		patch = fmt.Sprintf(`{"spec":{"volumeAttributesClassName":%q}}`, class)
	}
	_, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Patch(e.ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

func (e *env) class(name string, params map[string]string) string {
	e.t.Helper()
	full := e.ns + "-" + name
	vac := &storagev1.VolumeAttributesClass{ObjectMeta: metav1.ObjectMeta{Name: full}, DriverName: e.driver, Parameters: params}
	if _, err := e.kube.StorageV1().VolumeAttributesClasses().Create(e.ctx, vac, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.kube.StorageV1().VolumeAttributesClasses().Delete(context.Background(), full, metav1.DeleteOptions{})
	})
	return full
}

// events returns the events with reason on the object named name.
func (e *env) events(name, reason string) []v1.Event {
	e.t.Helper()
	return testutil.Events(e.t, e.ctx, e.kube, e.ns, name, reason)
}

// waitEvent waits for the event and checks, as read back from the API
// server, that it carries external-resizer's source component
// "external-resizer <driver>" (event filters on the source keep working).
func (e *env) waitEvent(name, reason, eventType, contains string) v1.Event {
	e.t.Helper()
	ev := testutil.WaitEvent(e.t, e.ctx, e.kube, e.ns, name, reason, eventType, contains)
	if want := "external-resizer " + e.driver; ev.Source.Component != want {
		e.t.Errorf("%s %s event on %s: source component %q, want %q", eventType, reason, name, ev.Source.Component, want)
	}
	return ev
}

// expandSizes returns required_bytes of every ControllerExpandVolume received.
func (e *env) expandSizes() []int64 {
	var out []int64
	for _, r := range fakedriver.RequestsOf[*csi.ControllerExpandVolumeRequest](e.drv) {
		out = append(out, r.GetCapacityRange().GetRequiredBytes())
	}
	return out
}

// csiCallTimes returns when the hub called method, from its step record.
func (e *env) csiCallTimes(method string) []time.Time {
	var out []time.Time
	for _, s := range e.hub.Steps.Recent(0) {
		if s.Kind == steps.CSI && strings.HasSuffix(s.Action, method) {
			out = append(out, s.Time)
		}
	}
	return out
}

// noConditions fails if the PVC has any of the given condition types.
func noConditions(t *testing.T, pvc *v1.PersistentVolumeClaim, types ...v1.PersistentVolumeClaimConditionType) {
	t.Helper()
	for _, c := range pvc.Status.Conditions {
		for _, ty := range types {
			if c.Type == ty {
				t.Errorf("PVC %s still has condition %s (%s): %+v", pvc.Name, ty, c.Message, pvc.Status.Conditions)
			}
		}
	}
}

func condition(pvc *v1.PersistentVolumeClaim, t v1.PersistentVolumeClaimConditionType) (v1.PersistentVolumeClaimCondition, bool) {
	for _, c := range pvc.Status.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return v1.PersistentVolumeClaimCondition{}, false
}

func gi(n int64) int64 { return n << 30 }

func quantityIs(q resource.Quantity, want string) bool { return q.Cmp(resource.MustParse(want)) == 0 }
