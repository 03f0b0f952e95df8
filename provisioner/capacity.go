package provisioner

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/csi-hub/csi-hub/provisioner/capacity"
)

// newCapacity builds the CSIStorageCapacity publisher (--enable-capacity,
// package capacity) from the provisioner's deps; the provisioner supplies the
// topology segments.
func newCapacity(ctx context.Context, c *Controller) (*capacity.Publisher, error) {
	d := c.d
	if !d.Caps.Has(csi.ControllerServiceCapability_RPC_GET_CAPACITY) {
		return nil, fmt.Errorf("--enable-capacity: driver %s does not report the GET_CAPACITY capability", d.Driver)
	}
	writer, err := capacity.NewWriter(d.RestConfig, c.cfg.KubeAPICapacityQPS, c.cfg.KubeAPICapacityBurst)
	if err != nil {
		return nil, err
	}
	deps := capacity.Deps{Driver: d.Driver, CSI: d.CSI, Kube: d.Kube, Writer: writer, Metrics: d.Metrics,
		Capacities: d.Capacities, Classes: d.Classes, Segments: c.capacitySegments, Steps: d.Steps, NewQueue: d.NewQueue}
	if c.topology && c.node == nil { // a node deployment has one fixed segment
		deps.CSINodes, deps.Nodes = d.CSINodes, d.Nodes
	}
	cfg := capacity.Config{PollInterval: c.cfg.CapacityPollInterval, Threads: c.cfg.CapacityThreads,
		ForImmediateBinding: c.cfg.CapacityForImmediateBinding, OwnerrefLevel: c.cfg.CapacityOwnerrefLevel,
		Timeout: c.d.Timeout, Topology: c.topology, ManagedBy: capacity.ManagedByValue, Controller: Name}
	if c.node != nil {
		cfg.ManagedBy = c.node.managedBy()
	}
	return capacity.New(ctx, deps, cfg)
}

// capacitySegments are the distinct topology segments of the nodes where the
// driver runs (their CSINode lists it); without topology one empty segment,
// which matches every node.
func (c *Controller) capacitySegments() ([]map[string]string, error) {
	if c.node != nil {
		return []map[string]string{c.node.segment}, nil // NodeGetInfo's, as the sidecar
	}
	if !c.topology {
		return []map[string]string{{}}, nil
	}
	csiNodes, err := c.csiNodeLister.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	seen := map[string]map[string]string{}
	for _, cn := range csiNodes {
		keys := topologyKeys(cn, c.d.Driver)
		if len(keys) == 0 {
			continue
		}
		node, err := c.nodeLister.Get(cn.Name)
		if err != nil {
			continue // node gone or not yet seen
		}
		t, ok := termFromLabels(node.Labels, keys)
		if !ok {
			continue
		}
		seg := make(map[string]string, len(t))
		for _, s := range t {
			seg[s.key] = s.value
		}
		seen[t.String()] = seg
	}
	out := make([]map[string]string, 0, len(seen))
	for _, k := range slices.Sorted(maps.Keys(seen)) {
		out = append(out, seen[k])
	}
	return out, nil
}
