package healthmonitor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// interval is the tests' --monitor-interval and --list-volumes-interval.
const interval = 2 * time.Second

type env struct {
	t    *testing.T
	ctx  context.Context
	c    *cluster.Cluster
	ns   string
	ctrl *Controller
}

func newEnv(t *testing.T, socket string, tweak ...func(*Config)) *env {
	t.Helper()
	c := cluster.Shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ns, err := c.CreateNamespace(ctx, "health")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, c: c, ns: ns}
	cfg := DefaultConfig()
	cfg.MonitorInterval, cfg.ListVolumesInterval, cfg.NodeListAddInterval = interval, interval, interval
	for _, f := range tweak {
		f(&cfg)
	}
	hubtest.Start(t, c.RESTConfig(), hubtest.Options(socket), func(h *hub.Hub) error {
		ctrl, err := New(t.Context(), hubDeps(h, cfg), cfg)
		if err != nil {
			return err
		}
		e.ctrl = ctrl
		h.Add(ctrl)
		return nil
	})
	return e
}

// boundClaim creates a PV of driver/handle and a PVC pre-bound to it and
// waits until kube-controller-manager has bound them.
func (e *env) boundClaim(name, driver, handle string) *v1.PersistentVolumeClaim {
	e.t.Helper()
	q := resource.MustParse("64Mi")
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-" + name},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: q},
			AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain,
			ClaimRef:                      &v1.ObjectReference{Namespace: e.ns, Name: name},
			PersistentVolumeSource:        v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: handle}},
		},
	}
	empty := ""
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: v1.PersistentVolumeClaimSpec{AccessModes: pv.Spec.AccessModes, VolumeName: pv.Name, StorageClassName: &empty,
			Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: q}}},
	}
	if _, err := e.c.Client.CoreV1().PersistentVolumes().Create(e.ctx, pv, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.c.Client.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	if _, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx, pvc, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	testutil.Eventually(e.t, e.ctx, time.Minute, "PVC "+name+" bound", func() (bool, error) {
		got, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if err == nil && got.Status.Phase == v1.ClaimBound {
			pvc = got
			return true, nil
		}
		return false, nil
	})
	return pvc
}

// waitEvent waits at most a few intervals for the event and reports how
// long it took. The event must carry external-health-monitor's source
// component, csi-pv-monitor-controller-<driver>, read back from the API
// server, so `kubectl get events --field-selector source=...` filters keep
// working.
func (e *env) waitEvent(claim, reason, typ, text string) time.Duration {
	e.t.Helper()
	start := time.Now()
	want := "csi-pv-monitor-controller-" + e.ctrl.d.Driver
	testutil.Eventually(e.t, e.ctx, 4*interval+5*time.Second, claim+": "+typ+" "+reason+" "+text, func() (bool, error) {
		for _, ev := range testutil.Events(e.t, e.ctx, e.c.Client, e.ns, claim, reason) {
			if ev.Type == typ && strings.Contains(ev.Message, text) {
				if ev.Source.Component != want {
					e.t.Errorf("%s %s event on %s: source component %q, want %q", typ, reason, claim, ev.Source.Component, want)
				}
				return true, nil
			}
		}
		return false, nil
	})
	return time.Since(start)
}

func (e *env) noEvent(claim, reason string) {
	e.t.Helper()
	if evs := testutil.Events(e.t, e.ctx, e.c.Client, e.ns, claim, reason); len(evs) > 0 {
		e.t.Errorf("%s: unexpected %s event: %s", claim, reason, evs[0].Message)
	}
}

// The companion driver (GET_VOLUME_HEALTH + LIST_VOLUME_HEALTH, CSI 1.13):
// a backing file truncated under a bound PVC gives VolumeConditionAbnormal
// with the driver's message within an interval; restored, the recovery
// event follows. A deleted backing file is DATA_LOSS, also restored.
func TestCompanionPluginCorruptAndRestore(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{DriverName: "health-" + testutil.ShortName(t) + ".csi-hub.io"})
	e := newEnv(t, d.SocketPath)
	if e.ctrl.mode != modeListHealth {
		t.Fatalf("mode = %s, want ControllerListVolumeHealth for the plugin", e.ctrl.mode)
	}
	create := func(name string) (string, string) {
		resp, err := d.ControllerClient().CreateVolume(e.ctx, &csi.CreateVolumeRequest{Name: e.ns + "-" + name,
			CapacityRange:      &csi.CapacityRange{RequiredBytes: 64 << 20},
			VolumeCapabilities: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}, AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetVolume().GetVolumeId()
		matches, _ := filepath.Glob(filepath.Join(d.PoolDir, id+"*"))
		if len(matches) != 1 {
			t.Fatalf("backing file of %s: %v", id, matches)
		}
		return id, matches[0]
	}
	idA, fileA := create("a")
	idB, fileB := create("b")
	e.boundClaim("a", d.DriverName, idA)
	e.boundClaim("b", d.DriverName, idB)
	time.Sleep(2 * interval) // healthy volumes: no event at all
	e.noEvent("a", reasonAbnormal)
	e.noEvent("a", reasonNormal)

	if err := os.Truncate(fileA, 32<<20); err != nil {
		t.Fatal(err)
	}
	took := e.waitEvent("a", reasonAbnormal, v1.EventTypeWarning, "record says")
	t.Logf("truncated backing file reported after %v", took.Round(time.Millisecond))
	e.noEvent("b", reasonAbnormal)
	if err := os.Truncate(fileA, 64<<20); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("a", reasonNormal, v1.EventTypeNormal, recoveryMessage)

	moved := fileB + ".away"
	if err := os.Rename(fileB, moved); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("b", reasonAbnormal, v1.EventTypeWarning, "missing")
	if err := os.Rename(moved, fileB); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("b", reasonNormal, v1.EventTypeNormal, recoveryMessage)
}

// A driver on the pre-1.13 numbering (VOLUME_CONDITION): read through
// ListVolumes when it has LIST_VOLUMES, else ControllerGetVolume per volume.
func TestFakeDriverLegacyCondition(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps []csi.ControllerServiceCapability_RPC_Type
		want mode
	}{
		{"list", []csi.ControllerServiceCapability_RPC_Type{csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
			csi.ControllerServiceCapability_RPC_LIST_VOLUMES, csi.ControllerServiceCapability_RPC_GET_VOLUME, fakedriver.CapVolumeCondition}, modeListLegacy},
		{"get", []csi.ControllerServiceCapability_RPC_Type{csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
			csi.ControllerServiceCapability_RPC_GET_VOLUME, fakedriver.CapVolumeCondition}, modeGetLegacy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "csi.sock")
			drv := fakedriver.New(fakedriver.Options{Name: testutil.ShortName(t) + ".fake.csi-hub.io", ControllerCapabilities: tc.caps})
			if err := drv.Start(sock); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(drv.StopNow)
			e := newEnv(t, sock)
			if e.ctrl.mode != tc.want {
				t.Fatalf("mode = %s, want %s", e.ctrl.mode, tc.want)
			}
			id, err := drv.AddVolume(fakedriver.Volume{Name: e.ns + "-data", CapacityBytes: 64 << 20})
			if err != nil {
				t.Fatal(err)
			}
			e.boundClaim("data", drv.Name(), id)
			drv.SetVolumeCondition(id, true, "controller lost path to the volume")
			e.waitEvent("data", reasonAbnormal, v1.EventTypeWarning, "controller lost path to the volume")
			drv.SetVolumeCondition(id, false, "")
			e.waitEvent("data", reasonNormal, v1.EventTypeNormal, recoveryMessage)
		})
	}
}

func legacyDriver(t *testing.T) (*fakedriver.Driver, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	drv := fakedriver.New(fakedriver.Options{Name: testutil.ShortName(t) + ".fake.csi-hub.io", ControllerCapabilities: []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME, csi.ControllerServiceCapability_RPC_LIST_VOLUMES, fakedriver.CapVolumeCondition}})
	if err := drv.Start(sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drv.StopNow)
	return drv, sock
}

// --enable-node-watcher: a node that stays NotReady past the grace period
// gets NodeFailed on the claims its Pods use (with the Pods' names); Ready
// again, NodeRecovered; deleted, NodeFailed again. Claims of Pods on other
// nodes get nothing.
func TestNodeWatcher(t *testing.T) {
	drv, sock := legacyDriver(t)
	e := newEnv(t, sock, func(c *Config) { c.EnableNodeWatcher = true })
	e.ctrl.nodes.notReadyFor = time.Second
	nodes := e.c.Client.CoreV1().Nodes()
	node := e.ns + "-node"
	other := e.ns + "-other"
	for _, n := range []string{node, other} {
		created, err := nodes.Create(e.ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nodes.Delete(context.Background(), n, metav1.DeleteOptions{}) })
		e.setReady(created, v1.ConditionTrue)
	}
	for _, claim := range []string{"on-node", "elsewhere"} {
		id, err := drv.AddVolume(fakedriver.Volume{Name: e.ns + "-" + claim, CapacityBytes: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		e.boundClaim(claim, drv.Name(), id)
	}
	e.pod("app-0", node, "on-node")
	e.pod("app-1", other, "elsewhere")

	n, _ := nodes.Get(e.ctx, node, metav1.GetOptions{})
	e.setReady(n, v1.ConditionFalse)
	e.waitEvent("on-node", reasonNodeFailed, v1.EventTypeWarning,
		"Pods: [ app-0 ] consuming PVC: on-node in namespace: "+e.ns+" are now on a failed node: "+node)
	n, _ = nodes.Get(e.ctx, node, metav1.GetOptions{})
	e.setReady(n, v1.ConditionTrue)
	e.waitEvent("on-node", reasonNodeRecovered, v1.EventTypeWarning, "Node: "+node+" recovered")
	if err := nodes.Delete(e.ctx, node, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, e.ctx, 4*interval+5*time.Second, "a second NodeFailed after the node is deleted", func() (bool, error) {
		evs := testutil.Events(t, e.ctx, e.c.Client, e.ns, "on-node", reasonNodeFailed)
		return len(evs) == 1 && evs[0].Count >= 2, nil
	})
	e.noEvent("elsewhere", reasonNodeFailed)
}

// setReady sets the node's Ready condition, retrying on conflicts with
// kube-controller-manager (which taints and annotates new nodes).
func (e *env) setReady(n *v1.Node, st v1.ConditionStatus) {
	e.t.Helper()
	name := n.Name
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := e.c.Client.CoreV1().Nodes().Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: st, LastHeartbeatTime: now, LastTransitionTime: now, Reason: "Test"}}
		_, err = e.c.Client.CoreV1().Nodes().UpdateStatus(e.ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// pod creates a Pod on node that mounts claim (no kubelet runs it).
func (e *env) pod(name, node, claim string) {
	e.t.Helper()
	no := false
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, Spec: v1.PodSpec{
		NodeName: node, AutomountServiceAccountToken: &no,
		Containers: []v1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		Volumes:    []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
	}}
	testutil.Eventually(e.t, e.ctx, 30*time.Second, "Pod "+name+" created", func() (bool, error) {
		_, err := e.c.Client.CoreV1().Pods(e.ns).Create(e.ctx, p, metav1.CreateOptions{})
		return err == nil, nil
	})
}
