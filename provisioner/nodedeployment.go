package provisioner

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/provisioner/capacity"
)

// EnvNodeName is the environment variable naming this node with
// --node-deployment, as external-provisioner and csi-snapshotter read it.
const EnvNodeName = "NODE_NAME"

// nodeDeployment is --node-deployment (external-provisioner v6.4's
// distributed provisioning): one csi-hub per node, beside the node's driver,
// provisions only the claims whose volume.kubernetes.io/selected-node is this
// node. A claim of an Immediate class (with --node-deployment-immediate-binding)
// has no selected node; every node competes for it: each waits a random,
// per-claim exponentially growing delay (--node-deployment-base-delay up to
// -max-delay, minus up to one base delay of jitter), checks that its driver has
// room (GetCapacity), and then writes its own name into selected-node with an
// Update guarded by resourceVersion. Exactly one write can win; the others see
// the annotation and stand back. Where the sidecar sleeps in its worker, the
// wait here is a delayed requeue, so workers are never held.
//
// The node's topology is its driver's NodeGetInfo: as the sidecar, the
// provisioner watches no Node or CSINode objects but uses one static Node and
// CSINode built from that answer, so the topology it asks for is this node's
// segment; CSIStorageCapacity objects cover that one segment, labelled
// managed-by external-provisioner-<node>. PVs are deleted only by the node
// whose topology the PV's node affinity selects.
type nodeDeployment struct {
	name      string
	info      *csi.NodeGetInfoResponse
	segment   map[string]string // NodeGetInfo's accessible topology; empty without
	immediate bool
	baseDelay time.Duration
	maxDelay  time.Duration

	mu sync.Mutex
	// attempts counts the competitions for a claim that this node did not win
	// (lost the race, no room, conflict): the next wait doubles.
	attempts map[types.UID]int
	// until is when this node may try to take a waiting claim.
	until map[types.UID]time.Time
}

// newNodeDeployment asks the driver for its node's identity and topology and
// gives the controller static Node and CSINode listers holding only this node.
func newNodeDeployment(ctx context.Context, c *Controller) (*nodeDeployment, error) {
	cfg := c.cfg
	name := cfg.NodeName
	if name == "" {
		name = os.Getenv(EnvNodeName)
	}
	if name == "" {
		return nil, fmt.Errorf("--node-deployment: the %s environment variable must be set (to the pod's spec.nodeName)", EnvNodeName)
	}
	if cfg.NodeDeploymentBaseDelay < 0 || cfg.NodeDeploymentMaxDelay < cfg.NodeDeploymentBaseDelay {
		return nil, fmt.Errorf("--node-deployment-base-delay %s and --node-deployment-max-delay %s: want 0 <= base <= max",
			cfg.NodeDeploymentBaseDelay, cfg.NodeDeploymentMaxDelay)
	}
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	info, err := c.d.Node.NodeGetInfo(cctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("--node-deployment: NodeGetInfo of driver %s: %w", c.d.Driver, err)
	}
	n := &nodeDeployment{
		name: name, info: info, segment: map[string]string{},
		immediate: cfg.NodeDeploymentImmediateBinding,
		baseDelay: cfg.NodeDeploymentBaseDelay, maxDelay: cfg.NodeDeploymentMaxDelay,
		attempts: map[types.UID]int{}, until: map[types.UID]time.Time{},
	}
	maps.Copy(n.segment, info.GetAccessibleTopology().GetSegments())
	if c.topology {
		c.nodeLister, c.csiNodeLister = n.staticListers(c.d.Driver)
	}
	return n, nil
}

// staticListers hold one Node labelled with this node's segment and one
// CSINode registering the driver with the segment's keys, never updated.
func (n *nodeDeployment) staticListers(driver string) (corelisters.NodeLister, storagelisters.CSINodeLister) {
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: maps.Clone(n.segment)}}
	csiNode := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: n.name}, Spec: storagev1.CSINodeSpec{
		Drivers: []storagev1.CSINodeDriver{{Name: driver, NodeID: n.info.GetNodeId(),
			TopologyKeys: slices.Sorted(maps.Keys(n.segment))}}}}
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	csiNodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	_ = nodes.Add(node)
	_ = csiNodes.Add(csiNode)
	return corelisters.NewNodeLister(nodes), storagelisters.NewCSINodeLister(csiNodes)
}

// managedBy is the managed-by label of this node's CSIStorageCapacity objects.
func (n *nodeDeployment) managedBy() string {
	return nameWithMaxLength(capacity.ManagedByValue, n.name, 63)
}

// claimIsMine says whether this node provisions the claim now. For a claim of
// an Immediate class without a selected node it runs one step of the
// competition; the error is then hub.RequeueAfter while this node waits, and
// nil once it wrote (or lost) the annotation: the claim's update brings it back.
func (n *nodeDeployment) claimIsMine(ctx context.Context, c *Controller, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass) (bool, error) {
	switch selected := claim.Annotations[annSelectedNode]; selected {
	case n.name:
		return true, nil
	case "":
	default:
		n.forget(claim.UID) // another node owns it
		return false, nil
	}
	if sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingImmediate || !n.immediate {
		return false, nil
	}
	logger := klog.FromContext(ctx)
	// A class whose allowedTopologies exclude this node is not ours to take.
	if len(sc.AllowedTopologies) > 0 && c.topology {
		node, err := c.nodeLister.Get(n.name)
		if err != nil {
			return false, err
		}
		if _, err := accessibilityRequirements(n.topologyRequest(c, claim, sc, node)); err != nil {
			logger.V(5).Info("Ignoring PVC: allowed topologies do not include this node", "PVC", klog.KObj(claim), "node", n.name, "err", err)
			return false, nil
		}
	}
	if wait := n.waitFor(claim.UID); wait > 0 {
		logger.V(5).Info("Will try to become owner of PVC", "PVC", klog.KObj(claim), "node", n.name, "in", wait)
		return false, hub.RequeueAfter(wait)
	}
	// Capacity is checked as late as possible: it costs a CSI call. A failed
	// check does not stop the attempt (the sidecar does the same): provisioning
	// then reports the problem on the claim.
	if room, err := n.hasCapacity(ctx, c, claim, sc); err != nil {
		logger.V(3).Info("Becoming owner although the capacity check failed", "PVC", klog.KObj(claim), "err", err)
	} else if !room {
		logger.V(5).Info("Not enough capacity on this node for PVC", "PVC", klog.KObj(claim), "node", n.name)
		return false, hub.RequeueAfter(n.retry(claim.UID))
	}
	c.d.Steps.Trigger(ctx, fmt.Sprintf("PVC %s/%s of Immediate StorageClass %q has no node yet: node %s (--node-deployment) claims it by setting %s",
		claim.Namespace, claim.Name, sc.Name, n.name, annSelectedNode))
	upd := claim.DeepCopy()
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[annSelectedNode] = n.name
	if _, err := c.d.Kube.CoreV1().PersistentVolumeClaims(upd.Namespace).Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			// Another node (or anyone) changed the claim: wait longer, and
			// stand back once its update shows who owns it.
			logger.V(3).Info("Conflict while becoming owner of PVC, will try again", "PVC", klog.KObj(claim), "node", n.name)
			return false, hub.RequeueAfter(n.retry(claim.UID))
		}
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("selecting node %q for PVC %s/%s: %w", n.name, claim.Namespace, claim.Name, err)
	}
	n.forget(claim.UID)
	logger.V(2).Info("Became owner of PVC", "PVC", klog.KObj(claim), "node", n.name)
	return false, nil
}

// waitFor starts a claim's wait on first sight and returns what is left of it.
func (n *nodeDeployment) waitFor(uid types.UID) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	until, ok := n.until[uid]
	if !ok {
		until = time.Now().Add(n.delayLocked(uid))
		n.until[uid] = until
	}
	return time.Until(until)
}

// retry records a lost attempt and starts the next, longer wait.
func (n *nodeDeployment) retry(uid types.UID) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.delayLocked(uid)
	n.until[uid] = time.Now().Add(d)
	return max(d, time.Millisecond)
}

// delayLocked is the sidecar's rate limiter with jitter: base*2^attempts
// capped at max, minus a random part of one base delay (never below 0).
func (n *nodeDeployment) delayLocked(uid types.UID) time.Duration {
	exp := n.attempts[uid]
	n.attempts[uid] = exp + 1
	d := n.baseDelay
	for i := 0; i < exp && d < n.maxDelay; i++ {
		d *= 2
	}
	d = min(d, n.maxDelay)
	jitter := time.Duration(rand.Float64() * float64(n.baseDelay))
	return max(d-jitter, 0)
}

// forget drops a claim's competition state (owned, gone or rescheduled:
// the next competition starts from the base delay again).
func (n *nodeDeployment) forget(uid types.UID) {
	if n == nil {
		return
	}
	n.mu.Lock()
	delete(n.attempts, uid)
	delete(n.until, uid)
	n.mu.Unlock()
}

func (n *nodeDeployment) topologyRequest(c *Controller, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass, node *v1.Node) topologyRequest {
	return topologyRequest{driver: c.d.Driver, claimName: claim.Name, allowed: sc.AllowedTopologies, selectedNode: node,
		strict: c.cfg.StrictTopology, immediate: c.cfg.ImmediateTopology, csiNodes: c.csiNodeLister, nodes: c.nodeLister}
}

// hasCapacity asks GetCapacity, with the CreateVolume request's capabilities,
// parameters and each requisite segment this node would ask for, whether the
// claim fits; true if one segment has room. A driver without GET_CAPACITY and
// a claim without a size always fit.
func (n *nodeDeployment) hasCapacity(ctx context.Context, c *Controller, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass) (bool, error) {
	size := claim.Spec.Resources.Requests[v1.ResourceStorage]
	if size.Value() == 0 || !c.d.Caps.Has(csi.ControllerServiceCapability_RPC_GET_CAPACITY) {
		return true, nil
	}
	_, caps, params, err := c.volumeShape(claim, sc)
	if err != nil {
		return false, err
	}
	topologies := []*csi.Topology{nil}
	if c.topology {
		node, err := c.nodeLister.Get(n.name)
		if err != nil {
			return false, err
		}
		req, err := accessibilityRequirements(n.topologyRequest(c, claim, sc, node))
		if err != nil {
			return false, err
		}
		if len(req.GetRequisite()) > 0 {
			topologies = req.GetRequisite()
		}
	}
	for _, t := range topologies {
		cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
		resp, err := c.d.CSI.GetCapacity(cctx, &csi.GetCapacityRequest{
			VolumeCapabilities: caps, Parameters: params, AccessibleTopology: t})
		cancel()
		if err != nil {
			return false, fmt.Errorf("GetCapacity: %w", err)
		}
		if size.Value() <= resp.GetAvailableCapacity() {
			return true, nil
		}
	}
	return false, nil
}

// deletesHere says whether this node deletes the PV: its node affinity selects
// this node's topology (the sidecar's VolumeIsAccessible). Without topology
// from NodeGetInfo, or without affinity, every node may.
func (n *nodeDeployment) deletesHere(pv *v1.PersistentVolume) bool {
	if n == nil || n.info.GetAccessibleTopology() == nil || pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return true
	}
	return matchesNodeSelector(n.segment, pv.Spec.NodeAffinity.Required)
}

// matchesNodeSelector evaluates a NodeSelector's terms (ORed; each term's
// expressions ANDed) against node labels, as the scheduler does; terms
// with field selectors only never match labels.
func matchesNodeSelector(nodeLabels map[string]string, ns *v1.NodeSelector) bool {
	set := labels.Set(nodeLabels)
	for _, t := range ns.NodeSelectorTerms {
		if len(t.MatchExpressions) == 0 {
			continue
		}
		sel, ok := selectorOf(t.MatchExpressions)
		if ok && sel.Matches(set) {
			return true
		}
	}
	return false
}

func selectorOf(exprs []v1.NodeSelectorRequirement) (labels.Selector, bool) {
	ops := map[v1.NodeSelectorOperator]selection.Operator{
		v1.NodeSelectorOpIn: selection.In, v1.NodeSelectorOpNotIn: selection.NotIn,
		v1.NodeSelectorOpExists: selection.Exists, v1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
		v1.NodeSelectorOpGt: selection.GreaterThan, v1.NodeSelectorOpLt: selection.LessThan,
	}
	sel := labels.NewSelector()
	for _, e := range exprs {
		op, ok := ops[e.Operator]
		if !ok {
			return nil, false
		}
		r, err := labels.NewRequirement(e.Key, op, e.Values)
		if err != nil {
			return nil, false
		}
		sel = sel.Add(*r)
	}
	return sel, true
}

// nameWithMaxLength joins base and suffix with a dash; a result longer than
// maxLength is shortened with an FNV-32a hash as external-provisioner's
// getNameWithMaxLength does (base truncated, then -<hash>-<suffix>, or, for a
// suffix too long to keep, <base prefix>-<hash of the whole name>).
func nameWithMaxLength(base, suffix string, maxLength int) string {
	name := suffix
	if base != "" {
		name = base + "-" + suffix
	}
	if len(name) <= maxLength {
		return name
	}
	hash := func(s string) string {
		h := fnv.New32a()
		h.Write([]byte(s))
		return fmt.Sprintf("%08x", h.Sum32())
	}
	baseLength := maxLength - 10 - len(suffix)
	if baseLength <= 0 {
		short := hash(name)
		if prefix := base[:min(len(base), max(0, maxLength-9))]; prefix != "" {
			short = prefix + "-" + hash(name)
		}
		return short[:min(maxLength, len(short))]
	}
	return base[:baseLength] + "-" + hash(base) + "-" + suffix
}
