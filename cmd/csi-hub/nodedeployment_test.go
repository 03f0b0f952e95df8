package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

const annSelectedNode = "volume.kubernetes.io/selected-node"

// ndProcNode is one node of the process-level node-deployment test: its own
// driver (its own pool) in the test process and its own csi-hub process.
type ndProcNode struct {
	t      *testing.T
	name   string
	socket string
	drv    *fakedriver.Driver
	kube   string // kubeconfig
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has been waited for
	log    *syncBuffer
}

// start runs csi-hub --node-deployment for this node, as the DaemonSet's
// container does: NODE_NAME from the environment, no leader election, no
// health port (two processes on one machine).
func (n *ndProcNode) start() {
	n.t.Helper()
	cmd := exec.Command(os.Args[0], "--csi-address="+n.socket, "--kubeconfig="+n.kube,
		"--node-deployment", "--node-deployment-base-delay=200ms", "--node-deployment-max-delay=2s",
		"--health-port=0", "-v=4")
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "NODE_NAME="+n.name)
	n.log = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	n.cmd, n.exited = cmd, exited
	n.t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		if n.t.Failed() {
			n.t.Logf("===== csi-hub of node %s (pid %d) =====\n%s", n.name, cmd.Process.Pid, tail(n.log.String(), 60))
		}
	})
}

// kill9 ends the node's csi-hub with SIGKILL (no shutdown code runs) and
// waits until the process is gone.
func (n *ndProcNode) kill9() {
	n.t.Helper()
	if err := syscall.Kill(n.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		n.t.Fatal(err)
	}
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		n.t.Fatalf("csi-hub of node %s still running 10s after SIGKILL", n.name)
	}
	if ws, ok := n.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		n.t.Fatalf("csi-hub of node %s ended with %v, want killed by SIGKILL", n.name, n.cmd.ProcessState)
	}
}

// creates counts the CreateVolume calls node's driver got for volume name.
func (n *ndProcNode) creates(name string) int {
	k := 0
	for _, r := range fakedriver.RequestsOf[*csi.CreateVolumeRequest](n.drv) {
		if r.GetName() == name {
			k++
		}
	}
	return k
}

// volumes counts the volumes named name in node's pool (the backend).
func (n *ndProcNode) volumes(name string) int {
	k := 0
	for _, v := range n.drv.Volumes() {
		if v.Name == name {
			k++
		}
	}
	return k
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// Two csi-hub processes with --node-deployment stand for two nodes, each
// beside its own driver (its own pool, topology key = node), on the real
// control plane. WaitForFirstConsumer claims are provisioned by the selected
// node's process only, into its pool. Then node B's process is killed with
// SIGKILL in the middle of a CreateVolume: B's claims (the one in flight and
// one selected after the kill) stay Pending and node A never provisions
// them, while A keeps provisioning its own. B's process restarted provisions
// both, each exactly once in the backend: the volume created by the call the
// kill cut off is the one the PV gets, not a second one.
func TestNodeDeploymentProcesses(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	kube, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.CreateNamespace(ctx, "nd-proc")
	if err != nil {
		t.Fatal(err)
	}
	driver := ns + ".fake.csi-hub.io"
	const topologyKey = "topology.fake.csi-hub.io/node"
	dir, err := os.MkdirTemp("", "hub-nd-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	node := func(suffix string) *ndProcNode {
		n := &ndProcNode{t: t, name: ns + "-" + suffix, socket: filepath.Join(dir, suffix+".sock"), kube: c.Kubeconfig}
		n.drv = fakedriver.New(fakedriver.Options{Name: driver, NodeID: n.name, Topology: true, TopologyKey: topologyKey,
			Zones: []string{n.name}, NodeZone: n.name, TotalCapacityBytes: 10 << 30})
		if err := n.drv.Start(n.socket); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.drv.StopNow)
		n.start()
		return n
	}
	a, b := node("a"), node("b")

	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	sc, err := kube.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-local"}, Provisioner: driver, VolumeBindingMode: &wffc}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
	})
	// claim creates a claim of the class and selects node for it, as the
	// scheduler does; it returns the volume name csi-hub gives it.
	claim := func(name string, n *ndProcNode) string {
		t.Helper()
		pvc := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: &sc.Name,
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		pvc, err := kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		patch := []byte(`{"metadata":{"annotations":{"` + annSelectedNode + `":"` + n.name + `"}}}`)
		if _, err := kube.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		return "pvc-" + string(pvc.UID)
	}
	get := func(name string) *corev1.PersistentVolumeClaim {
		t.Helper()
		pvc, err := kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return pvc
	}
	waitBound := func(name string) *corev1.PersistentVolume {
		t.Helper()
		testutil.Eventually(t, ctx, 90*time.Second, "claim "+name+" to be Bound", func() (bool, error) {
			return get(name).Status.Phase == corev1.ClaimBound, nil
		})
		pv, err := kube.CoreV1().PersistentVolumes().Get(ctx, get(name).Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return pv
	}
	// onlyOn checks that volume vol of claim pvName lives once in owner's
	// pool, was asked of owner's driver only, and that the PV is pinned to owner.
	onlyOn := func(claimName, vol string, owner, other *ndProcNode, pv *corev1.PersistentVolume) {
		t.Helper()
		if owner.volumes(vol) != 1 || other.volumes(vol) != 0 || other.creates(vol) != 0 {
			t.Errorf("claim %s (node %s): volumes in pool %s %d, in pool %s %d; CreateVolume on %s %d; want one volume, on %s only",
				claimName, owner.name, owner.name, owner.volumes(vol), other.name, other.volumes(vol), other.name, other.creates(vol), owner.name)
		}
		if v, ok := owner.drv.VolumeByName(vol); !ok || pv.Spec.CSI.VolumeHandle != v.ID {
			t.Errorf("claim %s: PV handle %s, pool %s has %+v", claimName, pv.Spec.CSI.VolumeHandle, owner.name, v)
		}
		expr := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0]
		if expr.Key != topologyKey || len(expr.Values) != 1 || expr.Values[0] != owner.name {
			t.Errorf("claim %s: PV node affinity %+v, want %s=%s", claimName, expr, topologyKey, owner.name)
		}
	}

	start := time.Now()
	a1, b1 := claim("a1", a), claim("b1", b)
	onlyOn("a1", a1, a, b, waitBound("a1"))
	onlyOn("b1", b1, b, a, waitBound("b1"))
	t.Logf("one claim per node bound in %s", time.Since(start).Round(time.Millisecond))

	// Node B's csi-hub dies (kill -9) while its driver creates b2.
	gate := b.drv.Gate("CreateVolume")
	b2 := claim("b2", b)
	if err := gate.WaitArrived(ctx); err != nil {
		t.Fatal(err)
	}
	b.kill9()
	gate.Release() // the backend finishes the call nobody waits for any more
	testutil.Eventually(t, ctx, 10*time.Second, "the cut-off CreateVolume to finish in the backend", func() (bool, error) {
		return b.volumes(b2) == 1, nil
	})
	b3 := claim("b3", b)
	a2 := claim("a2", a) // node A keeps working meanwhile
	onlyOn("a2", a2, a, b, waitBound("a2"))
	time.Sleep(4 * time.Second) // twice the max delay: no node competes for a selected claim
	for _, p := range []struct{ name, vol string }{{"b2", b2}, {"b3", b3}} {
		cur := get(p.name)
		if cur.Status.Phase != corev1.ClaimPending || cur.Spec.VolumeName != "" || cur.Annotations[annSelectedNode] != b.name {
			t.Errorf("claim %s with node B's csi-hub killed: phase %s, volume %q, selected node %q; want Pending on %s",
				p.name, cur.Status.Phase, cur.Spec.VolumeName, cur.Annotations[annSelectedNode], b.name)
		}
		if a.creates(p.vol) != 0 || a.volumes(p.vol) != 0 {
			t.Errorf("claim %s of killed node B: %d CreateVolume calls on node A, %d volumes in A's pool; want 0",
				p.name, a.creates(p.vol), a.volumes(p.vol))
		}
	}
	if n := b.creates(b3); n != 0 {
		t.Errorf("claim b3: %d CreateVolume calls on B's driver with B's csi-hub killed", n)
	}

	// Node B's csi-hub comes back (the kubelet restarts the container).
	restart := time.Now()
	b.start()
	onlyOn("b2", b2, b, a, waitBound("b2"))
	onlyOn("b3", b3, b, a, waitBound("b3"))
	t.Logf("node B restarted: its two pending claims bound in %s; CreateVolume calls for b2 %d (one cut off by the kill), b3 %d",
		time.Since(restart).Round(time.Millisecond), b.creates(b2), b.creates(b3))
	if got := len(b.drv.Volumes()) + len(a.drv.Volumes()); got != 5 {
		t.Errorf("%d volumes in the two pools, want 5 (a1 a2 b1 b2 b3): %v %v", got, a.drv.Volumes(), b.drv.Volumes())
	}
}
