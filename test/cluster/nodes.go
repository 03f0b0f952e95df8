package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// There is no kubelet in this cluster. The helpers below do the parts of a
// kubelet's job that controllers observe: the Node object with a Ready
// condition and heartbeat, the CSINode object, and Node.status.volumesInUse.

// AnnotationControllerManagedAttachDetach makes kube-controller-manager's
// attach/detach controller (not kubelet) attach volumes for pods on the node.
const AnnotationControllerManagedAttachDetach = "volumes.kubernetes.io/controller-managed-attach-detach"

// nodeLeaseNamespace is where kubelets keep their heartbeat Leases.
const nodeLeaseNamespace = "kube-node-lease"

// heartbeatInterval renews node Leases well within the node monitor grace
// period (40s+), so the node lifecycle controller keeps fake nodes Ready and
// never taints them unreachable (which would block scheduling and, after 5
// minutes, evict their pods).
const heartbeatInterval = 10 * time.Second

// CreateNode creates a Ready Node whose volumes the attach/detach controller
// manages, with capacity for pods, plus the usual kubernetes.io/hostname,
// os and arch labels (merged under labels). The cluster then renews the
// node's Lease until Stop, as a kubelet would.
func (c *Cluster) CreateNode(ctx context.Context, name string, labels map[string]string) (*corev1.Node, error) {
	all := map[string]string{
		corev1.LabelHostname:   name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
	}
	for k, v := range labels {
		all[k] = v
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      all,
		Annotations: map[string]string{AnnotationControllerManagedAttachDetach: "true"},
	}}
	node, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating node %s: %w", name, err)
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	// kube-controller-manager updates new nodes at once (taints), hence retries.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if node, err = c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		node.Status.Capacity = capacity
		node.Status.Allocatable = capacity
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: name}}
		node.Status.Conditions = []corev1.NodeCondition{readyCondition()}
		node, err = c.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("marking node %s Ready: %w", name, err)
	}
	if err := c.renewLease(ctx, node); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, name)
	c.mu.Unlock()
	return node, nil
}

func readyCondition() corev1.NodeCondition {
	now := metav1.Now()
	return corev1.NodeCondition{
		Type:               corev1.NodeReady,
		Status:             corev1.ConditionTrue,
		Reason:             "KubeletReady",
		Message:            "fake kubelet of csi-hub test/cluster",
		LastHeartbeatTime:  now,
		LastTransitionTime: now,
	}
}

// renewLease creates or renews the node's heartbeat Lease.
func (c *Cluster) renewLease(ctx context.Context, node *corev1.Node) error {
	leases := c.Client.CoordinationV1().Leases(nodeLeaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, node.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:      node.Name,
				Namespace: nodeLeaseNamespace,
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
				}},
			},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(node.Name),
				LeaseDurationSeconds: ptr.To[int32](40),
				RenewTime:            &now,
			},
		}
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
	} else if err == nil {
		lease.Spec.RenewTime = &now
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("renewing lease of node %s: %w", node.Name, err)
	}
	return nil
}

// heartbeatNodes renews the Leases of nodes made by CreateNode until ctx ends.
// Deleted nodes are dropped silently; other errors are retried next round.
func (c *Cluster) heartbeatNodes(ctx context.Context) {
	tick := time.NewTicker(heartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.mu.Lock()
		names := slices.Clone(c.nodes)
		c.mu.Unlock()
		for _, name := range names {
			node, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				c.mu.Lock()
				c.nodes = slices.DeleteFunc(c.nodes, func(n string) bool { return n == name })
				c.mu.Unlock()
				continue
			}
			if err == nil {
				_ = c.renewLease(ctx, node)
			}
		}
	}
}

// CreateCSINode creates the node's CSINode object, or adds the driver's entry
// to an existing one (replacing a different entry of the same driver), as
// kubelet does after a CSI driver registers. topologyKeys are the label keys of the node's topology segment.
func (c *Cluster) CreateCSINode(ctx context.Context, node, driver, nodeID string, topologyKeys []string) (*storagev1.CSINode, error) {
	entry := storagev1.CSINodeDriver{Name: driver, NodeID: nodeID, TopologyKeys: topologyKeys}
	csiNodes := c.Client.StorageV1().CSINodes()
	var result *storagev1.CSINode
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		existing, err := csiNodes.Get(ctx, node, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("getting node %s: %w", node, err)
			}
			result, err = csiNodes.Create(ctx, &storagev1.CSINode{
				ObjectMeta: metav1.ObjectMeta{
					Name: node,
					OwnerReferences: []metav1.OwnerReference{{
						APIVersion: "v1", Kind: "Node", Name: node, UID: n.UID,
					}},
				},
				Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{entry}},
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		i := slices.IndexFunc(existing.Spec.Drivers, func(d storagev1.CSINodeDriver) bool { return d.Name == driver })
		if i >= 0 {
			if old := existing.Spec.Drivers[i]; old.NodeID == nodeID && slices.Equal(old.TopologyKeys, topologyKeys) {
				result = existing
				return nil
			}
			// A driver entry is immutable: drop the old one in a first update.
			existing.Spec.Drivers = slices.Delete(existing.Spec.Drivers, i, i+1)
			if existing, err = csiNodes.Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
		existing.Spec.Drivers = append(existing.Spec.Drivers, entry)
		result, err = csiNodes.Update(ctx, existing, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating CSINode %s for driver %s: %w", node, driver, err)
	}
	return result, nil
}

// CSIVolumeName is the unique volume name kubelet and the attach/detach
// controller use for a CSI volume, as listed in Node.status.volumesInUse.
func CSIVolumeName(driver, volumeHandle string) corev1.UniqueVolumeName {
	return corev1.UniqueVolumeName("kubernetes.io/csi/" + driver + "^" + volumeHandle)
}

// SetVolumesInUse sets Node.status.volumesInUse, which kubelet reports for
// volumes it has mounted, and refreshes the Ready heartbeat so the update is
// always a real write that kube-controller-manager sees.
//
// Detach protocol: the attach/detach controller assumes an attached volume is
// mounted until a Node update lists it as not in use, and it detaches only
// then (or after a 6 minute timeout on an unhealthy node). So after deleting a
// pod, call SetVolumesInUse(ctx, node) with the volumes still mounted (none)
// to let the VolumeAttachment be deleted. Volume names: CSIVolumeName.
func (c *Cluster) SetVolumesInUse(ctx context.Context, node string, volumes ...corev1.UniqueVolumeName) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.VolumesInUse = slices.Clone(volumes)
		ready := readyCondition()
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeReady {
				ready.LastTransitionTime = n.Status.Conditions[i].LastTransitionTime
				n.Status.Conditions[i] = ready
			}
		}
		_, err = c.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("setting volumesInUse of node %s: %w", node, err)
	}
	return nil
}

// CreateNamespace creates a namespace named prefix plus a random suffix, so
// tests sharing a cluster do not see each other's objects. It returns once
// kube-controller-manager has created the namespace's default ServiceAccount,
// without which pods in it are rejected.
func (c *Cluster) CreateNamespace(ctx context.Context, prefix string) (string, error) {
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating namespace %s-*: %w", prefix, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return "", fmt.Errorf("waiting for the default ServiceAccount in namespace %s: %w", ns.Name, err)
	}
	return ns.Name, nil
}
