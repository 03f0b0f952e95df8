package provisioner

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// env is one integration test's world: the shared cluster, a namespace, a
// fake driver with a name of its own (so hubs of other tests ignore its
// objects) and a csi-hub running the provisioner against both.
type env struct {
	t      testing.TB
	ctx    context.Context
	c      *cluster.Cluster
	kube   kubernetes.Interface
	ns     string
	driver string
	socket string
	drv    *fakedriver.Driver
	hub    *hubtest.Running
	ctrl   *Controller
	cfg    Config
	// tuneHub, when set, adjusts the hub options (e.g. the API budget).
	tuneHub func(*hub.Options)
}

func newEnv(t testing.TB, opts fakedriver.Options, cfg Config) *env {
	t.Helper()
	e := baseEnv(t, cfg)
	e.startFake(opts)
	e.startHub()
	return e
}

// startFake serves a fake driver named e.driver on e.socket.
func (e *env) startFake(opts fakedriver.Options) {
	e.t.Helper()
	opts.Name = e.driver
	e.socket = filepath.Join(e.t.TempDir(), "csi.sock")
	e.drv = fakedriver.New(opts)
	if err := e.drv.Start(e.socket); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(e.drv.StopNow)
}

// baseEnv prepares the cluster side: a namespace and a driver name of the
// test's own. The caller starts a driver on e.socket and then the hub.
func baseEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	c := cluster.Shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ns, err := c.CreateNamespace(ctx, "prov")
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, c: c, kube: c.Client, ns: ns, driver: testutil.ShortName(t) + ".fake.csi-hub.io", cfg: cfg}
}

func (e *env) startHub() {
	e.t.Helper()
	opts := hubtest.Options(e.socket)
	if e.tuneHub != nil {
		e.tuneHub(&opts)
	}
	e.hub = hubtest.Start(e.t, e.c.RESTConfig(), opts, func(h *hub.Hub) error {
		ctrl, err := New(e.t.Context(), hubDeps(h, e.cfg), e.cfg)
		if err != nil {
			return err
		}
		e.ctrl = ctrl
		h.Add(ctrl)
		return nil
	})
}

func (e *env) restartHub() {
	e.t.Helper()
	if err := e.hub.Stop(); err != nil {
		e.t.Fatalf("stopping hub: %v", err)
	}
	e.startHub()
}

type scOption func(*storagev1.StorageClass)

func withParams(kv ...string) scOption {
	return func(sc *storagev1.StorageClass) {
		for i := 0; i < len(kv); i += 2 {
			sc.Parameters[kv[i]] = kv[i+1]
		}
	}
}

func withPolicy(p v1.PersistentVolumeReclaimPolicy) scOption {
	return func(sc *storagev1.StorageClass) { sc.ReclaimPolicy = &p }
}

func waitForConsumer(sc *storagev1.StorageClass) {
	m := storagev1.VolumeBindingWaitForFirstConsumer
	sc.VolumeBindingMode = &m
}

func (e *env) storageClass(name string, opts ...scOption) *storagev1.StorageClass {
	e.t.Helper()
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-" + name}, Provisioner: e.driver, Parameters: map[string]string{}}
	for _, o := range opts {
		o(sc)
	}
	sc, err := e.kube.StorageV1().StorageClasses().Create(e.ctx, sc, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.kube.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
	})
	return sc
}

type pvcOption func(*v1.PersistentVolumeClaim)

func (e *env) createPVC(name, class, size string, opts ...pvcOption) *v1.PersistentVolumeClaim {
	e.t.Helper()
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			StorageClassName: &class,
			Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	for _, o := range opts {
		o(pvc)
	}
	pvc, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pvc
}

// eventually polls cond until it holds; an error from cond fails the test.
func (e *env) eventually(timeout time.Duration, what string, cond func() (bool, error)) {
	e.t.Helper()
	testutil.Eventually(e.t, e.ctx, timeout, what, cond)
}

func (e *env) waitBound(name string) (*v1.PersistentVolumeClaim, *v1.PersistentVolume) {
	e.t.Helper()
	var pvc *v1.PersistentVolumeClaim
	e.eventually(60*time.Second, "PVC "+name+" to be Bound", func() (bool, error) {
		var err error
		pvc, err = e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		return err == nil && pvc.Status.Phase == v1.ClaimBound, nil
	})
	pv, err := e.kube.CoreV1().PersistentVolumes().Get(e.ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pvc, pv
}

func (e *env) waitPVGone(name string) {
	e.t.Helper()
	e.eventually(60*time.Second, "PV "+name+" to be deleted", func() (bool, error) {
		_, err := e.kube.CoreV1().PersistentVolumes().Get(e.ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func (e *env) deletePVC(name string) {
	e.t.Helper()
	if err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// events returns the events with reason on the object named name.
func (e *env) events(name, reason string) []v1.Event {
	e.t.Helper()
	return testutil.Events(e.t, e.ctx, e.kube, e.ns, name, reason)
}

func (e *env) waitEvent(name, reason, eventType, contains string) v1.Event {
	e.t.Helper()
	return testutil.WaitEvent(e.t, e.ctx, e.kube, e.ns, name, reason, eventType, contains)
}

// createRequests returns the CreateVolume requests the driver received for name.
func (e *env) createRequests(name string) []*csi.CreateVolumeRequest {
	var out []*csi.CreateVolumeRequest
	for _, r := range fakedriver.RequestsOf[*csi.CreateVolumeRequest](e.drv) {
		if r.GetName() == name {
			out = append(out, r)
		}
	}
	return out
}

// node creates a Node with the zone label and a CSINode advertising the driver's topology key.
func (e *env) node(name, zone string) *v1.Node {
	e.t.Helper()
	name = e.ns + "-" + name
	// A bare Node object is enough: there is no scheduler or kubelet, and
	// the provisioner only reads labels. (cluster.CreateNode also marks it
	// Ready, which races with kube-controller-manager's taint updates.)
	n, err := e.kube.CoreV1().Nodes().Create(e.ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{v1.LabelHostname: name, fakedriver.DefaultTopologyKey: zone}}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.c.CreateCSINode(e.ctx, name, e.driver, name, []string{fakedriver.DefaultTopologyKey}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = e.kube.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return n
}
