package snapshotter_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/app"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/snapshotter"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// env is one test's world: its own driver name (so hubs of different tests
// never act on each other's objects), namespace, fake driver and hub.
type env struct {
	t      testing.TB
	ctx    context.Context
	c      *cluster.Cluster
	snaps  snapclient.Interface
	ns     string
	name   string // driver name
	driver *fakedriver.Driver
	socket string
	hub    *hub.Hub
	ctrl   *snapshotter.Controller
	// wrap, when set, sees every request of the next hub started.
	wrap func(http.RoundTripper) http.RoundTripper
}

func newEnv(t testing.TB, c *cluster.Cluster, prefix string, opts fakedriver.Options) *env {
	t.Helper()
	e := newBareEnv(t, c, prefix)
	opts.Name = e.ns + ".fake.csi-hub.io"
	e.name, e.driver = opts.Name, fakedriver.New(opts)
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := mkShortDir(t)
	if err != nil {
		t.Fatal(err)
	}
	e.socket = filepath.Join(dir, "csi.sock")
	if err := e.driver.Start(e.socket); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.driver.StopNow)
	return e
}

// newBareEnv has a namespace and clients but no driver yet.
func newBareEnv(t testing.TB, c *cluster.Cluster, prefix string) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	snaps, err := snapclient.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.CreateNamespace(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, c: c, snaps: snaps, ns: ns}
}

// startHub runs a hub with the snapshotter (and what more adds) until the
// test ends or stop is called.
func (e *env) startHub(cfg snapshotter.Config, more ...func(h *hub.Hub) error) (stop func()) {
	e.t.Helper()
	restCfg := e.c.RESTConfig()
	if e.wrap != nil {
		restCfg.Wrap(e.wrap)
	}
	r := hubtest.Start(e.t, restCfg, hubtest.Options(e.socket), func(h *hub.Hub) error {
		d, err := app.SnapshotterDeps(h, cfg)
		if err != nil {
			return err
		}
		c, err := snapshotter.New(e.t.Context(), d, cfg)
		if err != nil {
			return err
		}
		e.ctrl = c
		h.Add(c)
		for _, add := range more {
			if err := add(h); err != nil {
				return err
			}
		}
		return nil
	})
	e.hub = r.Hub
	return func() {
		if err := r.Stop(); err != nil {
			e.t.Errorf("stopping the hub: %v", err)
		}
	}
}

// testConfig is the default config with a fast CRD poll.
func testConfig() snapshotter.Config {
	cfg := snapshotter.DefaultConfig()
	cfg.CRDPollInterval = time.Second
	return cfg
}

// sourcePVC puts a volume into the backend and binds a PVC to a static PV of
// it (the provisioner's job, out of this package's scope), returning the
// volume handle.
func (e *env) sourcePVC(name string) string {
	e.t.Helper()
	handle, err := e.driver.AddVolume(fakedriver.Volume{Name: e.ns + "-" + name, CapacityBytes: 1 << 30})
	if err != nil {
		e.t.Fatal(err)
	}
	e.bindPVC(name, handle, "1Gi")
	return handle
}

// bindPVC binds a PVC named name to a static PV of the volume handle;
// tweaks adjust the PV before it is created (e.g. its node affinity).
func (e *env) bindPVC(name, handle, size string, tweaks ...func(*corev1.PersistentVolume)) {
	e.t.Helper()
	pvName := e.ns + "-" + name
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "",
			ClaimRef:                      &corev1.ObjectReference{Namespace: e.ns, Name: name},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: e.name, VolumeHandle: handle}},
		},
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(""),
			VolumeName:       pvName,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	// The claim first, then the PV pointing at its UID: the PV binder then
	// binds on the PV's add event instead of at its next periodic sync.
	created, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	pv.Spec.ClaimRef.UID = created.UID
	for _, tweak := range tweaks {
		tweak(pv)
	}
	if _, err := e.c.Client.CoreV1().PersistentVolumes().Create(e.ctx, pv, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.c.Client.CoreV1().PersistentVolumes().Delete(context.Background(), pvName, metav1.DeleteOptions{})
	})
	// The PV binder syncs a claim on its events and otherwise only every 15s;
	// if it saw the claim before the PV reached its cache, touching the claim
	// makes it look again now.
	pokes := 0
	lastPoke := time.Now()
	e.poll(time.Minute, "PVC "+name+" to bind", func() (bool, error) {
		got, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil || got.Status.Phase == corev1.ClaimBound {
			return err == nil, err
		}
		if time.Since(lastPoke) > 500*time.Millisecond {
			pokes++
			lastPoke = time.Now()
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"test.csi-hub.io/poke":"%d"}}}`, pokes)
			_, err = e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Patch(e.ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		}
		return false, err
	})
}

// class creates a VolumeSnapshotClass of the env's driver.
func (e *env) class(suffix string, policy snapv1.DeletionPolicy, params map[string]string) string {
	e.t.Helper()
	name := e.ns + "-" + suffix
	cls := &snapv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: e.name, DeletionPolicy: policy, Parameters: params,
	}
	if _, err := e.snaps.SnapshotV1().VolumeSnapshotClasses().Create(e.ctx, cls, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.snaps.SnapshotV1().VolumeSnapshotClasses().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// snapshot creates a VolumeSnapshot of pvc with class.
func (e *env) snapshot(name, pvc, class string) *snapv1.VolumeSnapshot {
	e.t.Helper()
	vs := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: snapv1.VolumeSnapshotSpec{
			Source:                  snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(pvc)},
			VolumeSnapshotClassName: ptr.To(class),
		},
	}
	got, err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Create(e.ctx, vs, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return got
}

func (e *env) getSnapshot(name string) *snapv1.VolumeSnapshot {
	e.t.Helper()
	vs, err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return vs
}

// waitReady waits for the VolumeSnapshot to be readyToUse (the
// snapshot-controller's propagation of the content status) and returns it
// and its content.
func (e *env) waitReady(name string, timeout time.Duration) (*snapv1.VolumeSnapshot, *snapv1.VolumeSnapshotContent) {
	e.t.Helper()
	var vs *snapv1.VolumeSnapshot
	e.poll(timeout, "VolumeSnapshot "+name+" to be readyToUse", func() (bool, error) {
		var err error
		vs, err = e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		return err == nil && vs.Status != nil && ptr.Deref(vs.Status.ReadyToUse, false), err
	})
	return vs, e.content(*vs.Status.BoundVolumeSnapshotContentName)
}

func (e *env) content(name string) *snapv1.VolumeSnapshotContent {
	e.t.Helper()
	c, err := e.snaps.SnapshotV1().VolumeSnapshotContents().Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// boundContent waits for the snapshot-controller to create and bind a content.
func (e *env) boundContent(snapshot string) string {
	e.t.Helper()
	var name string
	e.poll(time.Minute, "a VolumeSnapshotContent for "+snapshot, func() (bool, error) {
		vs, err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Get(e.ctx, snapshot, metav1.GetOptions{})
		if err != nil || vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil {
			return false, err
		}
		name = *vs.Status.BoundVolumeSnapshotContentName
		return true, nil
	})
	return name
}

func (e *env) waitContentGone(name string, timeout time.Duration) {
	e.t.Helper()
	e.poll(timeout, "VolumeSnapshotContent "+name+" to be deleted", func() (bool, error) {
		_, err := e.snaps.SnapshotV1().VolumeSnapshotContents().Get(e.ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// events returns "type reason: message" of the events on a cluster-scoped
// object (recorded in namespace default), and checks their source.
func (e *env) events(object string) []string {
	e.t.Helper()
	list, err := e.c.Client.CoreV1().Events(metav1.NamespaceDefault).List(e.ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", object).String()})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		// csi-snapshotter's events carry its source component "csi-snapshotter
		// <driver>" (event filters on the source keep working); the
		// snapshot-controller's carry its own.
		if src := ev.Source.Component; src != "snapshot-controller" && src != "csi-snapshotter "+e.name {
			e.t.Errorf("%s %s event on %s: source component %q, want %q", ev.Type, ev.Reason, object, src, "csi-snapshotter "+e.name)
		}
		out = append(out, fmt.Sprintf("%s %s: %s", ev.Type, ev.Reason, ev.Message))
	}
	return out
}

func (e *env) backendHas(id string) bool {
	for _, s := range e.driver.Snapshots() {
		if s.ID == id {
			return true
		}
	}
	return false
}

// poll waits until cond holds; its errors are retried until timeout.
func (e *env) poll(timeout time.Duration, what string, cond func() (bool, error)) {
	e.t.Helper()
	testutil.EventuallyTolerant(e.t, e.ctx, timeout, what, cond)
}

func hasPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

func mkShortDir(t testing.TB) (string, error) {
	dir, err := os.MkdirTemp("", "snapit")
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir, nil
}
