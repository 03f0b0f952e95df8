package provisioner

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/plugin"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/provisioner/capacity"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// ndTopologyKey pins a node-local volume to its node, as the companion
// plugin's loop transport does (topology.<driver>/node).
const ndTopologyKey = "topology.fake.csi-hub.io/node"

// ndNode is one node of a --node-deployment test: its own driver (its own
// pool, reporting the node's topology) and its own csi-hub.
type ndNode struct {
	name string
	drv  *fakedriver.Driver
	hub  *hubtest.Running
}

// ndConfig is the provisioner config of the node-deployment tests: the
// sidecar's mode with short delays, so a competition takes a second.
func ndConfig() Config {
	cfg := DefaultConfig()
	cfg.NodeDeployment = true
	cfg.NodeDeploymentBaseDelay = 300 * time.Millisecond
	cfg.NodeDeploymentMaxDelay = 3 * time.Second
	return cfg
}

// startNode runs a driver whose pool holds capacity bytes and a csi-hub with
// --node-deployment for node name (not a Node object: as the sidecar, the
// provisioner takes its node's topology from NodeGetInfo only).
func (e *env) startNode(suffix string, capacity int64) *ndNode {
	e.t.Helper()
	n := &ndNode{name: e.ns + "-" + suffix}
	socket := filepath.Join(e.t.TempDir(), "csi.sock")
	n.drv = fakedriver.New(fakedriver.Options{Name: e.driver, NodeID: n.name, Topology: true, TopologyKey: ndTopologyKey,
		Zones: []string{n.name}, NodeZone: n.name, TotalCapacityBytes: capacity})
	if err := n.drv.Start(socket); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(n.drv.StopNow)
	n.hub = e.startNodeHub(n.name, socket)
	return n
}

// startNodeHub runs a csi-hub with --node-deployment for node on the driver at socket.
func (e *env) startNodeHub(node, socket string) *hubtest.Running {
	e.t.Helper()
	cfg := e.cfg
	cfg.NodeName = node
	return hubtest.Start(e.t, e.c.RESTConfig(), hubtest.Options(socket), func(h *hub.Hub) error {
		ctrl, err := New(e.t.Context(), hubDeps(h, cfg), cfg)
		if err != nil {
			return err
		}
		h.Add(ctrl)
		return nil
	})
}

// creates counts the CreateVolume calls the node's driver got for volume name.
func (n *ndNode) creates(name string) int {
	k := 0
	for _, r := range fakedriver.RequestsOf[*csi.CreateVolumeRequest](n.drv) {
		if r.GetName() == name {
			k++
		}
	}
	return k
}

func (n *ndNode) deletes(handle string) int {
	k := 0
	for _, r := range fakedriver.RequestsOf[*csi.DeleteVolumeRequest](n.drv) {
		if r.GetVolumeId() == handle {
			k++
		}
	}
	return k
}

func (e *env) pvcNow(name string) *v1.PersistentVolumeClaim {
	e.t.Helper()
	pvc, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pvc
}

// WaitForFirstConsumer with two node deployments: each claim is provisioned
// by the csi-hub of its selected node only, into that node's pool, with
// that node's segment as the whole topology; a claim without a selected node
// is left alone; a released PV is deleted by its own node's csi-hub only.
// Each node publishes the capacity of its own segment, labelled
// managed-by=external-provisioner-<node>.
func TestNodeDeploymentSelectedNode(t *testing.T) {
	cfg := ndConfig()
	cfg.EnableCapacity = true
	cfg.CapacityPollInterval = 500 * time.Millisecond
	cfg.CapacityOwnerrefLevel = -1
	e := baseEnv(t, cfg)
	t.Setenv("NAMESPACE", e.ns)
	sc := e.storageClass("local", waitForConsumer)
	a, b := e.startNode("a", 10<<30), e.startNode("b", 10<<30)

	pa := e.createPVC("on-a", sc.Name, "1Gi")
	pb := e.createPVC("on-b", sc.Name, "2Gi")
	unscheduled := e.createPVC("unscheduled", sc.Name, "1Gi")
	e.selectNode("on-a", a.name)
	e.selectNode("on-b", b.name)
	_, pvA := e.waitBound("on-a")
	_, pvB := e.waitBound("on-b")

	nameA, nameB := "pvc-"+string(pa.UID), "pvc-"+string(pb.UID)
	if a.creates(nameA) != 1 || b.creates(nameA) != 0 || b.creates(nameB) != 1 || a.creates(nameB) != 0 {
		t.Fatalf("CreateVolume calls: on-a a=%d b=%d, on-b a=%d b=%d; want each claim on its selected node only, once",
			a.creates(nameA), b.creates(nameA), a.creates(nameB), b.creates(nameB))
	}
	for _, c := range []struct {
		n  *ndNode
		pv *v1.PersistentVolume
		vn string
	}{{a, pvA, nameA}, {b, pvB, nameB}} {
		var req *csi.CreateVolumeRequest
		for _, r := range fakedriver.RequestsOf[*csi.CreateVolumeRequest](c.n.drv) {
			if r.GetName() == c.vn {
				req = r
			}
		}
		ar := req.GetAccessibilityRequirements()
		if len(ar.GetRequisite()) != 1 || ar.Requisite[0].GetSegments()[ndTopologyKey] != c.n.name || len(ar.Requisite[0].GetSegments()) != 1 {
			t.Errorf("node %s: accessibility requirements %v, want only {%s=%s}", c.n.name, ar, ndTopologyKey, c.n.name)
		}
		terms := c.pv.Spec.NodeAffinity.Required.NodeSelectorTerms
		if len(terms) != 1 || terms[0].MatchExpressions[0].Key != ndTopologyKey || terms[0].MatchExpressions[0].Values[0] != c.n.name {
			t.Errorf("PV %s node affinity %+v, want %s=%s", c.pv.Name, c.pv.Spec.NodeAffinity, ndTopologyKey, c.n.name)
		}
	}
	// The driver's identity in the PV carries the node, as the sidecar's.
	if id := pvA.Spec.CSI.VolumeAttributes["storage.kubernetes.io/csiProvisionerIdentity"]; len(id) < len(a.name) || id[len(id)-len(a.name):] != a.name {
		t.Errorf("provisioner identity %q does not end with node %s", id, a.name)
	}

	time.Sleep(2 * time.Second)
	if n := a.creates("pvc-"+string(unscheduled.UID)) + b.creates("pvc-"+string(unscheduled.UID)); n != 0 {
		t.Errorf("%d CreateVolume calls for a WaitForFirstConsumer claim without selected node, want 0", n)
	}

	// Capacity: one object per node, its segment, its managed-by.
	e.eventually(30*time.Second, "one CSIStorageCapacity per node", func() (bool, error) {
		list, err := e.kube.StorageV1().CSIStorageCapacities(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: capacity.LabelDriverName + "=" + e.driver})
		if err != nil {
			return false, err
		}
		seen := map[string]bool{}
		for _, csc := range list.Items {
			node := csc.NodeTopology.MatchLabels[ndTopologyKey]
			if csc.Labels[capacity.LabelManagedBy] != capacity.ManagedByValue+"-"+node || len(csc.NodeTopology.MatchLabels) != 1 || csc.StorageClassName != sc.Name {
				return false, fmt.Errorf("CSIStorageCapacity %s: labels %v, topology %v, class %s", csc.Name, csc.Labels, csc.NodeTopology, csc.StorageClassName)
			}
			seen[node] = true
		}
		return len(list.Items) == 2 && seen[a.name] && seen[b.name], nil
	})

	// Deletion: only the PV's own node deletes its volume.
	e.deletePVC("on-a")
	e.waitPVGone(pvA.Name)
	if a.deletes(pvA.Spec.CSI.VolumeHandle) < 1 || b.deletes(pvA.Spec.CSI.VolumeHandle) != 0 {
		t.Errorf("DeleteVolume of %s: node a %d, node b %d; want node a only", pvA.Name, a.deletes(pvA.Spec.CSI.VolumeHandle), b.deletes(pvA.Spec.CSI.VolumeHandle))
	}
}

// Immediate claims: the nodes compete by writing selected-node; exactly one
// node provisions each claim (one CreateVolume in all), the one its
// annotation names. A node without room for a claim stands back.
func TestNodeDeploymentImmediate(t *testing.T) {
	e := baseEnv(t, ndConfig())
	sc := e.storageClass("immediate")
	a, b := e.startNode("a", 100<<30), e.startNode("b", 100<<30)

	const claims = 12
	start := time.Now()
	for i := range claims {
		e.createPVC(fmt.Sprintf("imm-%d", i), sc.Name, "1Gi")
	}
	won := map[string]int{}
	for i := range claims {
		pvc, pv := e.waitBound(fmt.Sprintf("imm-%d", i))
		name := "pvc-" + string(pvc.UID)
		owner := pvc.Annotations[annSelectedNode]
		ca, cb := a.creates(name), b.creates(name)
		switch {
		case owner == a.name && ca == 1 && cb == 0, owner == b.name && cb == 1 && ca == 0:
		default:
			t.Errorf("claim %s: selected node %q, CreateVolume on a %d, on b %d; want one call, on the selected node", pvc.Name, owner, ca, cb)
		}
		if got := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0]; got != owner {
			t.Errorf("claim %s: PV on %s, selected node %s", pvc.Name, got, owner)
		}
		won[owner]++
	}
	t.Logf("%d Immediate claims bound in %s: node a provisioned %d, node b %d", claims, time.Since(start).Round(time.Millisecond), won[a.name], won[b.name])

	// A node whose pool is too small never takes the claim.
	small := e.startNode("small", 1<<30)
	e.createPVC("big", sc.Name, "5Gi")
	pvc, _ := e.waitBound("big")
	if owner := pvc.Annotations[annSelectedNode]; owner == small.name || small.creates("pvc-"+string(pvc.UID)) != 0 {
		t.Errorf("claim of 5Gi taken by node %s whose pool has 1Gi", owner)
	}
}

// A node whose csi-hub is gone (cancelled, its driver stopped: the node
// died) keeps its claims: a WaitForFirstConsumer claim selected for it and
// an Immediate claim it had taken stay Pending, and the other node's
// csi-hub never creates their volumes.
func TestNodeDeploymentNodeDown(t *testing.T) {
	e := baseEnv(t, ndConfig())
	wffc := e.storageClass("local", waitForConsumer)
	imm := e.storageClass("immediate")
	a, b := e.startNode("a", 10<<30), e.startNode("b", 10<<30)

	// Hold CreateVolume on both nodes, so the Immediate claim's winner is
	// caught between taking it and provisioning it.
	gates := map[string]*fakedriver.Gate{a.name: a.drv.Gate("CreateVolume"), b.name: b.drv.Gate("CreateVolume")}
	taken := e.createPVC("taken", imm.Name, "1Gi")
	var owner string
	e.eventually(30*time.Second, "a node to take the Immediate claim", func() (bool, error) {
		owner = e.pvcNow("taken").Annotations[annSelectedNode]
		return owner != "", nil
	})
	dead, alive := a, b
	if owner == b.name {
		dead, alive = b, a
	}
	if err := gates[dead.name].WaitArrived(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := dead.hub.Stop(); err != nil {
		t.Fatalf("stopping node %s: %v", dead.name, err)
	}
	dead.drv.StopNow()
	gates[dead.name].Release()
	gates[alive.name].Release()

	orphan := e.createPVC("orphan", wffc.Name, "1Gi")
	e.selectNode("orphan", dead.name)
	// The alive node still works: its own claim binds meanwhile.
	mine := e.createPVC("mine", wffc.Name, "1Gi")
	e.selectNode("mine", alive.name)
	e.waitBound("mine")
	if alive.creates("pvc-"+string(mine.UID)) != 1 {
		t.Errorf("alive node's own claim: %d CreateVolume calls, want 1", alive.creates("pvc-"+string(mine.UID)))
	}

	time.Sleep(5 * time.Second) // well beyond the max delay of 3s
	for _, p := range []*v1.PersistentVolumeClaim{taken, orphan} {
		cur := e.pvcNow(p.Name)
		if cur.Status.Phase != v1.ClaimPending || cur.Spec.VolumeName != "" || cur.Annotations[annSelectedNode] != dead.name {
			t.Errorf("claim %s: phase %s, volume %q, selected node %q; want Pending on dead node %s",
				p.Name, cur.Status.Phase, cur.Spec.VolumeName, cur.Annotations[annSelectedNode], dead.name)
		}
		if n := alive.creates("pvc-" + string(p.UID)); n != 0 {
			t.Errorf("claim %s of the dead node: %d CreateVolume calls on the alive node, want 0", p.Name, n)
		}
	}
}

// The companion plugin with the loop transport, one pool per node: each
// node's plugin (controller and node service, topology.<driver>/node=<node>,
// as csi-hub-plugin --mode=all --node-local-pool) and csi-hub with
// --node-deployment make a multi-node setup. A claim
// selected for a node, and an Immediate claim a node took, are created in
// that node's pool only.
func TestNodeDeploymentCompanionPlugin(t *testing.T) {
	e := baseEnv(t, ndConfig())
	e.driver = strings.TrimSuffix(e.driver, ".fake.csi-hub.io") + ".block.csi-hub.io"
	key := plugin.TopologyNodeKey(e.driver)
	pools := e.companionNodes("a", "b")
	volumesIn := func(d *plugintest.Driver) map[string]bool {
		resp, err := d.ControllerClient().ListVolumes(e.ctx, &csi.ListVolumesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, v := range resp.GetEntries() {
			ids[v.GetVolume().GetVolumeId()] = true
		}
		return ids
	}
	wffc := e.storageClass("local", waitForConsumer)
	imm := e.storageClass("immediate")
	nodeA := e.ns + "-a"
	e.createPVC("selected", wffc.Name, "64Mi")
	e.selectNode("selected", nodeA)
	e.createPVC("raced", imm.Name, "64Mi")
	for _, claim := range []string{"selected", "raced"} {
		pvc, pv := e.waitBound(claim)
		owner := pvc.Annotations[annSelectedNode]
		if pools[owner] == nil {
			t.Fatalf("claim %s: selected node %q is not one of the nodes", claim, owner)
		}
		for name, d := range pools {
			if in := volumesIn(d)[pv.Spec.CSI.VolumeHandle]; in != (name == owner) {
				t.Errorf("claim %s (node %s): volume %s in the pool of node %s: %v", claim, owner, pv.Spec.CSI.VolumeHandle, name, in)
			}
		}
		if v := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0]; v.Key != key || v.Values[0] != owner {
			t.Errorf("claim %s: PV node affinity %+v, want %s=%s", claim, v, key, owner)
		}
	}
	if owner := e.pvcNow("selected").Annotations[annSelectedNode]; owner != nodeA {
		t.Errorf("selected-node of the WaitForFirstConsumer claim changed to %q", owner)
	}
}

// companionNodes runs, for each suffix, node <ns>-<suffix>: the companion
// plugin with its own pool serving Controller and Node (csi-hub-plugin
// --mode=all --node-local-pool: an empty publish_context is staged from this
// pool) and a csi-hub with --node-deployment on its socket.
func (e *env) companionNodes(suffixes ...string) map[string]*plugintest.Driver {
	e.t.Helper()
	pools := map[string]*plugintest.Driver{}
	for _, suffix := range suffixes {
		name := e.ns + "-" + suffix
		pools[name] = plugintest.Start(e.t, plugintest.Options{DriverName: e.driver, NodeID: name, Capacity: 1 << 30, LocalNode: true})
		e.startNodeHub(name, pools[name].SocketPath)
	}
	return pools
}

// The node-local setup end to end, short of a kubelet: the CSIDriver has
// attachRequired: false, so there is no VolumeAttachment and no
// ControllerPublishVolume, and the kubelet stages with an empty
// publish_context. A claim provisioned by node B's csi-hub into node B's pool
// is staged and published through node B's plugin exactly as the kubelet
// calls it (volume_context from the PV, no publish_context; real loop device
// and ext4), bytes are written, it is unpublished and unstaged, staged again
// and the bytes are there. Node A's plugin refuses it with NotFound naming
// the volume and node A: its pool does not hold it.
func TestNodeDeploymentCompanionPluginStage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING: the companion driver's node service needs root for loop devices; run as root")
	}
	e := baseEnv(t, ndConfig())
	e.driver = strings.TrimSuffix(e.driver, ".fake.csi-hub.io") + ".block.csi-hub.io"
	pools := e.companionNodes("a", "b")
	nodeA, nodeB := e.ns+"-a", e.ns+"-b"
	wffc := e.storageClass("local", waitForConsumer)
	e.createPVC("data", wffc.Name, "64Mi")
	e.selectNode("data", nodeB)
	_, pv := e.waitBound("data")
	id := pv.Spec.CSI.VolumeHandle
	if _, err := pools[nodeB].ControllerClient().ControllerGetVolume(e.ctx, &csi.ControllerGetVolumeRequest{VolumeId: id}); err != nil {
		t.Fatalf("volume %s of the claim selected for node B is not in node B's pool: %v", id, err)
	}

	// What the kubelet sends for this PV with attachRequired: false (RWO with
	// SINGLE_NODE_MULTI_WRITER support: SINGLE_NODE_MULTI_WRITER).
	vc := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: pv.Spec.CSI.FSType}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER},
	}
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "globalmount"), filepath.Join(dir, "pods", "mount")
	t.Cleanup(func() {
		// A failed test must not leave mounts behind (deepest first).
		_ = exec.Command("umount", "-l", target).Run()
		_ = exec.Command("umount", "-l", staging).Run()
	})
	up := func(d *plugintest.Driver) error {
		if _, err := d.NodeClient().NodeStageVolume(e.ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging,
			VolumeCapability: vc, VolumeContext: pv.Spec.CSI.VolumeAttributes}); err != nil {
			return fmt.Errorf("NodeStageVolume: %w", err)
		}
		if _, err := d.NodeClient().NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging,
			TargetPath: target, VolumeCapability: vc, VolumeContext: pv.Spec.CSI.VolumeAttributes}); err != nil {
			return fmt.Errorf("NodePublishVolume: %w", err)
		}
		return nil
	}
	down := func(d *plugintest.Driver) {
		t.Helper()
		if _, err := d.NodeClient().NodeUnpublishVolume(e.ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatalf("NodeUnpublishVolume: %v", err)
		}
		if _, err := d.NodeClient().NodeUnstageVolume(e.ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Fatalf("NodeUnstageVolume: %v", err)
		}
		if out, _ := exec.Command("losetup", "-a").CombinedOutput(); strings.Contains(string(out), pools[nodeB].PoolDir) {
			t.Errorf("after unstage a loop device of node B's pool is left: %s", out)
		}
	}

	err := up(pools[nodeA])
	if st, _ := status.FromError(errors.Unwrap(err)); st.Code() != codes.NotFound || !strings.Contains(st.Message(), id) || !strings.Contains(st.Message(), nodeA) {
		t.Errorf("node A staging node B's volume: %v, want NotFound naming %s and %s", err, id, nodeA)
	}
	data := []byte("written on " + nodeB + "\n")
	if err := up(pools[nodeB]); err != nil {
		t.Fatalf("node B, empty publish_context: %v", err)
	}
	if err := os.WriteFile(filepath.Join(target, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	down(pools[nodeB])
	if err := up(pools[nodeB]); err != nil {
		t.Fatalf("node B, staging again: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "data")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("after staging again the file holds %q, %v; want %q", got, err, data)
	}
	down(pools[nodeB])
}
