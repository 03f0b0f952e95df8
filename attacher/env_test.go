package attacher_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/attacher"
	"github.com/csi-hub/csi-hub/internal/app"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// env is one test's world: its own driver name (so VolumeAttachments of other
// tests are not ours), namespace, node, fake driver and hub.
type env struct {
	t      testing.TB
	c      *cluster.Cluster
	ctx    context.Context
	driver *fakedriver.Driver
	name   string // driver name
	socket string
	ns     string
	node   string
	nodeID string
	cfg    attacher.Config
	hub    *hubtest.Running
	ctrl   *attacher.Controller
}

// newEnv starts a fake driver named after prefix with opts and a node for it.
// The hub is started by startHub so tests can prepare the driver first.
func newEnv(t testing.TB, prefix string, opts fakedriver.Options) *env {
	t.Helper()
	e := newBaseEnv(t, prefix)
	e.startDriver(t, opts)
	return e
}

// startDriver starts a fake driver with opts under the env's driver name and
// node ID, on a socket removed with the test.
func (e *env) startDriver(t testing.TB, opts fakedriver.Options) {
	t.Helper()
	opts.Name, opts.NodeID = e.name, e.nodeID
	e.driver = fakedriver.New(opts)
	dir, err := os.MkdirTemp("", "att-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.socket = filepath.Join(dir, "csi.sock")
	if err := e.driver.Start(e.socket); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.driver.StopNow)
}

// newBaseEnv makes the namespace and node; the caller starts a driver named
// e.name reporting node ID e.nodeID and sets e.socket.
func newBaseEnv(t testing.TB, prefix string) *env {
	t.Helper()
	c := cluster.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	e := &env{t: t, c: c, ctx: ctx, name: prefix + ".fake.csi-hub.io", cfg: attacher.DefaultConfig()}
	ns, err := c.CreateNamespace(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	e.ns, e.node, e.nodeID = ns, ns+"-node", "id-"+ns
	e.createNode()
	return e
}

// createNode works around a race in cluster.CreateNode: its status update can
// conflict with kube-controller-manager's first write to the new Node. Then
// the half-made node is deleted and created again.
func (e *env) createNode() {
	e.t.Helper()
	for attempt := 1; ; attempt++ {
		_, err := e.c.CreateNode(e.ctx, e.node, nil)
		if err == nil {
			return
		}
		if attempt == 3 || !strings.Contains(err.Error(), "the object has been modified") {
			e.t.Fatal(err)
		}
		e.t.Logf("retrying node creation after: %v", err)
		_ = e.c.Client.CoreV1().Nodes().Delete(e.ctx, e.node, metav1.DeleteOptions{})
		e.waitGone("Node "+e.node, time.Minute, func() error {
			_, err := e.c.Client.CoreV1().Nodes().Get(e.ctx, e.node, metav1.GetOptions{})
			return err
		})
	}
}

func (e *env) registerNode() {
	e.t.Helper()
	if _, err := e.c.CreateCSINode(e.ctx, e.node, e.name, e.nodeID, nil); err != nil {
		e.t.Fatal(err)
	}
}

// startHub runs a hub with only the attacher, using e.cfg.
func (e *env) startHub() {
	e.t.Helper()
	e.hub = hubtest.Start(e.t, e.c.RESTConfig(), hubtest.Options(e.socket), func(h *hub.Hub) error {
		d, err := app.AttacherDeps(h, e.cfg)
		if err != nil {
			return err
		}
		ctrl, err := attacher.New(e.t.Context(), d, e.cfg)
		if err != nil {
			return err
		}
		e.ctrl = ctrl
		h.Add(ctrl)
		return nil
	})
}

// volume creates a backend volume and a PV/PVC pair bound to each other.
func (e *env) volume(name string) (pvName, handle string) {
	e.t.Helper()
	return e.volumeWith(name, nil)
}

// volumeWith is volume with a chance to change the PV and PVC before creation.
func (e *env) volumeWith(name string, mutate func(*corev1.PersistentVolume, *corev1.PersistentVolumeClaim)) (pvName, handle string) {
	e.t.Helper()
	handle = e.ns + "-" + name
	if _, err := e.driver.AddVolume(fakedriver.Volume{ID: handle, Name: handle, CapacityBytes: 1 << 30}); err != nil {
		e.t.Fatal(err)
	}
	return e.boundPV(name, handle, mutate), handle
}

// boundPV creates a PV of the existing volume handle and a claim bound to it.
func (e *env) boundPV(name, handle string, mutate func(*corev1.PersistentVolume, *corev1.PersistentVolumeClaim)) (pvName string) {
	e.t.Helper()
	pvName = e.ns + "-" + name
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: e.ns, Name: name},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: e.name, VolumeHandle: handle, FSType: "ext4",
				VolumeAttributes: map[string]string{"origin": "attacher-test"},
			}},
		},
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(""),
			VolumeName:       pvName,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if mutate != nil {
		mutate(pv, pvc)
	}
	if _, err := e.c.Client.CoreV1().PersistentVolumes().Create(e.ctx, pv, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx, pvc, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.waitFor("PVC "+name+" to be bound", time.Minute, func() (bool, error) {
		got, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.ClaimBound, err
	})
	return pvName
}

// pod creates a pod on e.node that uses claim; kube-controller-manager then
// creates the VolumeAttachment.
func (e *env) pod(name, claim string) {
	e.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: corev1.PodSpec{
			NodeName:   e.node,
			Containers: []corev1.Container{{Name: "app", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}},
		},
	}
	if _, err := e.c.Client.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// podBlock is pod with the claim as a raw block device.
func (e *env) podBlock(name, claim string) {
	e.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: corev1.PodSpec{
			NodeName:   e.node,
			Containers: []corev1.Container{{Name: "app", Image: "busybox", VolumeDevices: []corev1.VolumeDevice{{Name: "data", DevicePath: "/dev/xvda"}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}},
		},
	}
	if _, err := e.c.Client.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// deletePod deletes the pod and, playing kubelet, reports no volume in use,
// which lets the attach/detach controller delete the VolumeAttachment.
func (e *env) deletePod(name string) {
	e.t.Helper()
	if err := e.c.Client.CoreV1().Pods(e.ns).Delete(e.ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.c.SetVolumesInUse(e.ctx, e.node); err != nil {
		e.t.Fatal(err)
	}
}

// va waits for kube-controller-manager's VolumeAttachment of pv.
func (e *env) va(pv string) *storagev1.VolumeAttachment {
	e.t.Helper()
	var found *storagev1.VolumeAttachment
	defer func(began time.Time) {
		e.t.Logf("kube-controller-manager created VolumeAttachment of %s within %v", pv, time.Since(began).Round(100*time.Millisecond))
	}(time.Now())
	e.waitFor("kube-controller-manager to create the VolumeAttachment of "+pv, 2*time.Minute, func() (bool, error) {
		list, err := e.c.Client.StorageV1().VolumeAttachments().List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for i := range list.Items {
			if ptr.Deref(list.Items[i].Spec.Source.PersistentVolumeName, "") == pv {
				found = &list.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// waitVA polls the VolumeAttachment until cond holds.
func (e *env) waitVA(name, what string, timeout time.Duration, cond func(*storagev1.VolumeAttachment) bool) *storagev1.VolumeAttachment {
	e.t.Helper()
	var last *storagev1.VolumeAttachment
	e.waitFor("VolumeAttachment "+name+" "+what, timeout, func() (bool, error) {
		va, err := e.c.Client.StorageV1().VolumeAttachments().Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = va
		return cond(va), nil
	})
	return last
}

func (e *env) waitGone(what string, timeout time.Duration, get func() error) {
	e.t.Helper()
	e.waitFor(what+" to be gone", timeout, func() (bool, error) {
		err := get()
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

func (e *env) waitVAGone(name string) {
	e.t.Helper()
	e.waitGone("VolumeAttachment "+name, 2*time.Minute, func() error {
		_, err := e.c.Client.StorageV1().VolumeAttachments().Get(e.ctx, name, metav1.GetOptions{})
		return err
	})
}

// releasePV deletes the claim and the PV; the PV can only go once our
// finalizer is removed, which proves the PV side of the protocol.
func (e *env) releasePV(claim, pv string) {
	e.t.Helper()
	if err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Delete(e.ctx, claim, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.c.Client.CoreV1().PersistentVolumes().Delete(e.ctx, pv, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.waitGone("PersistentVolume "+pv, 2*time.Minute, func() error {
		got, err := e.c.Client.CoreV1().PersistentVolumes().Get(e.ctx, pv, metav1.GetOptions{})
		if err == nil {
			e.t.Logf("PV %s finalizers %v phase %s", pv, got.Finalizers, got.Status.Phase)
		}
		return err
	})
}

// waitFor polls cond until it holds; its errors are retried (transient API
// errors happen on a busy machine).
func (e *env) waitFor(what string, timeout time.Duration, cond func() (bool, error)) {
	e.t.Helper()
	testutil.EventuallyTolerant(e.t, e.ctx, timeout, what, cond)
}

// expectWarning checks a Warning event with reason and a message containing
// msg was emitted on the VolumeAttachment: in the hub's step record, which
// every event passes through, and in the API server, with external-attacher's
// source component.
func (e *env) expectWarning(va, reason, msg string) {
	e.t.Helper()
	e.waitFor("a Warning "+reason+" step on VolumeAttachment "+va, 30*time.Second, func() (bool, error) {
		for _, s := range e.hub.Steps.Recent(0) {
			if s.Kind == steps.Event && s.Object == "VolumeAttachment "+va && s.Action == reason &&
				s.Result == corev1.EventTypeWarning && strings.Contains(s.Detail, msg) {
				return true, nil
			}
		}
		return false, nil
	})
	e.waitFor("a Warning "+reason+" event on VolumeAttachment "+va+" in the API", 30*time.Second, func() (bool, error) {
		list, err := e.c.Client.CoreV1().Events(metav1.NamespaceAll).List(e.ctx, metav1.ListOptions{
			FieldSelector: fmt.Sprintf("involvedObject.kind=VolumeAttachment,involvedObject.name=%s,reason=%s,type=Warning", va, reason),
		})
		if err != nil {
			return false, err
		}
		for _, ev := range list.Items {
			if strings.Contains(ev.Message, msg) {
				if want := "csi-attacher " + e.name; ev.Source.Component != want {
					e.t.Errorf("%s event on VolumeAttachment %s: source component %q, want external-attacher's %q", reason, va, ev.Source.Component, want)
				}
				return true, nil
			}
		}
		return false, nil
	})
}

// dump logs what a failing test needs to see: the VolumeAttachment, the
// driver's calls and the hub's recent steps.
func (e *env) dump(va string) {
	got, err := e.c.Client.StorageV1().VolumeAttachments().Get(e.ctx, va, metav1.GetOptions{})
	e.t.Logf("VolumeAttachment %s: %+v (err %v)", va, got, err)
	for _, m := range []string{"ControllerPublishVolume", "ControllerUnpublishVolume", "ListVolumes"} {
		e.t.Logf("driver calls %s: %d", m, e.driver.Calls(m))
	}
	for _, s := range e.hub.Steps.Recent(0) {
		e.t.Logf("step %+v", s)
	}
}
