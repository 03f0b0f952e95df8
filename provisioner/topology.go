package provisioner

import (
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
)

// segment is one topology key=value; a term ANDs its segments and is kept
// sorted by key so terms compare and deduplicate.
type segment struct{ key, value string }
type term []segment

func (t term) sort() {
	slices.SortFunc(t, func(a, b segment) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return strings.Compare(a.value, b.value)
	})
}

func (t term) compare(o term) int {
	if len(t) != len(o) {
		return len(t) - len(o)
	}
	for i := range t {
		if c := strings.Compare(t[i].key, o[i].key); c != 0 {
			return c
		}
		if c := strings.Compare(t[i].value, o[i].value); c != 0 {
			return c
		}
	}
	return 0
}

func (t term) equal(o term) bool { return t.compare(o) == 0 }

// subsetOf reports whether every segment of t is in o (both sorted).
func (t term) subsetOf(o term) bool {
	j := 0
	for _, s := range o {
		if j == len(t) {
			break
		}
		if s.key != t[j].key {
			continue
		}
		if s.value != t[j].value {
			return false
		}
		j++
	}
	return j == len(t)
}

func (t term) String() string {
	parts := make([]string, len(t))
	for i, s := range t {
		parts[i] = s.key + "=" + s.value
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func toCSITopology(terms []term) []*csi.Topology {
	out := make([]*csi.Topology, 0, len(terms))
	for _, t := range terms {
		if len(t) == 0 {
			continue
		}
		segs := make(map[string]string, len(t))
		for _, s := range t {
			segs[s.key] = s.value
		}
		out = append(out, &csi.Topology{Segments: segs})
	}
	return out
}

// termFromLabels takes the values of keys from a node's labels; ok is false
// when the node lacks one of them.
func termFromLabels(nodeLabels map[string]string, keys []string) (term, bool) {
	t := make(term, 0, len(keys))
	for _, k := range keys {
		v, ok := nodeLabels[k]
		if !ok {
			return nil, false
		}
		t = append(t, segment{k, v})
	}
	t.sort()
	return t, true
}

// flattenAllowed turns allowedTopologies (OR of terms; each an AND of keys; each
// key an OR of values) into a flat OR of terms with one value per key, by
// distributing the value ORs: {zone in (a,b), rack in (1)} -> {a,1} OR {b,1}.
func flattenAllowed(allowed []v1.TopologySelectorTerm) []term {
	var out []term
	for _, sel := range allowed {
		var terms []term
		for _, expr := range sel.MatchLabelExpressions {
			var next []term
			for _, v := range expr.Values {
				if len(terms) == 0 {
					next = append(next, term{{expr.Key, v}})
					continue
				}
				for _, t := range terms {
					next = append(next, append(slices.Clone(t), segment{expr.Key, v}))
				}
			}
			terms = next
		}
		out = append(out, terms...)
	}
	for _, t := range out {
		t.sort()
	}
	return out
}

func topologyKeys(csiNode *storagev1.CSINode, driver string) []string {
	for _, d := range csiNode.Spec.Drivers {
		if d.Name == driver {
			return d.TopologyKeys
		}
	}
	return nil
}

// topologyRequest is what accessibilityRequirements needs.
type topologyRequest struct {
	driver       string
	claimName    string
	allowed      []v1.TopologySelectorTerm
	selectedNode *v1.Node // nil with immediate binding
	strict       bool
	immediate    bool
	csiNodes     storagelisters.CSINodeLister
	nodes        corelisters.NodeLister
}

// accessibilityRequirements builds CreateVolume's accessibility_requirements as
// the sidecar does: requisite from allowedTopologies, else from the topology of
// every node whose labels carry the driver's CSINode topology keys; preferred
// starts with the selected node's topology (delayed binding) or, with immediate
// binding, is the requisite list rotated by a hash of the PVC name so the
// replicas of a StatefulSet spread over zones. nil means "no constraint".
func accessibilityRequirements(r topologyRequest) (*csi.TopologyRequirement, error) {
	var (
		keys      []string
		selected  term
		requisite []term
	)
	if r.selectedNode != nil {
		csiNode, err := r.csiNodes.Get(r.selectedNode.Name)
		if err != nil {
			if apierrors.IsNotFound(err) {
				// As the sidecar: ask the scheduler for another node.
				return nil, rescheduleError{fmt.Errorf("selected node %q has no CSINode object: the driver's node plugin has not registered there", r.selectedNode.Name)}
			}
			return nil, fmt.Errorf("getting CSINode %q: %w", r.selectedNode.Name, err)
		}
		if keys = topologyKeys(csiNode, r.driver); len(keys) == 0 {
			return nil, fmt.Errorf("no topology key found on CSINode %s for driver %s", csiNode.Name, r.driver)
		}
		var ok bool
		if selected, ok = termFromLabels(r.selectedNode.Labels, keys); !ok {
			return nil, fmt.Errorf("topology labels from selected node %q %v do not match topology keys %v from its CSINode", r.selectedNode.Name, r.selectedNode.Labels, keys)
		}
		if r.strict {
			if len(r.allowed) > 0 && !slices.ContainsFunc(flattenAllowed(r.allowed), func(t term) bool { return t.subsetOf(selected) }) {
				return nil, fmt.Errorf("selected node %q topology %v is not in the StorageClass allowedTopologies", r.selectedNode.Name, selected)
			}
			requisite = []term{selected}
		}
	}
	if len(requisite) == 0 {
		switch {
		case len(r.allowed) > 0:
			requisite = flattenAllowed(r.allowed)
		case r.selectedNode == nil && !r.immediate:
			return nil, nil
		default:
			var err error
			if requisite, err = clusterTopology(r, keys); err != nil {
				return nil, err
			}
			if len(requisite) == 0 {
				return nil, fmt.Errorf("no available topology found: the driver has not registered topology on any node")
			}
		}
	}
	slices.SortFunc(requisite, term.compare)
	requisite = slices.CompactFunc(requisite, term.equal)
	requisite = slices.DeleteFunc(requisite, func(t term) bool { return len(t) == 0 })
	if len(requisite) == 0 {
		return nil, nil // allowedTopologies with empty entries: no constraint
	}

	var preferred []term
	switch {
	case r.selectedNode == nil:
		i := stsSpreadOffset(r.claimName) % uint32(len(requisite))
		preferred = append(slices.Clone(requisite[i:]), requisite[:i]...)
	case r.strict:
		preferred = requisite
	default:
		i := slices.IndexFunc(requisite, func(t term) bool { return t.subsetOf(selected) })
		if i < 0 {
			return nil, fmt.Errorf("topology %v of selected node %q is not in requisite %v", selected, r.selectedNode.Name, requisite)
		}
		preferred = append(slices.Clone(requisite[i:]), requisite[:i]...)
	}
	return &csi.TopologyRequirement{Requisite: toCSITopology(requisite), Preferred: toCSITopology(preferred)}, nil
}

// clusterTopology collects the topology the cluster offers, as
// external-provisioner v6.4 does (#1582): with delayed binding for the
// selected node's keys, with immediate binding once per distinct key set the
// driver registered on any CSINode. Either way a node counts only when its own
// CSINode registers all of those keys: topology labels often exist without
// the driver, and a node must not be offered under keys its driver did not report.
func clusterTopology(r topologyRequest, keys []string) ([]term, error) {
	csiNodes, err := r.csiNodes.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("listing CSINodes: %w", err)
	}
	registered := make(map[string][]string, len(csiNodes))
	var keySets [][]string
	seen := map[string]bool{}
	for _, n := range csiNodes {
		k := topologyKeys(n, r.driver)
		if len(k) == 0 {
			continue
		}
		k = slices.Sorted(slices.Values(k))
		registered[n.Name] = k
		if id := strings.Join(k, "\x00"); !seen[id] {
			seen[id] = true
			keySets = append(keySets, k)
		}
	}
	if len(keys) > 0 {
		keySets = [][]string{keys}
	}
	if len(keySets) == 0 {
		return nil, nil
	}
	slices.SortFunc(keySets, slices.Compare)
	var terms []term
	for _, ks := range keySets {
		t, err := topologyForKeys(r.nodes, ks, registered)
		if err != nil {
			return nil, err
		}
		terms = append(terms, t...)
	}
	if len(terms) == 0 {
		return nil, fmt.Errorf("topology keys %v were not found on any node", keySets)
	}
	return terms, nil
}

// topologyForKeys is one term per node that carries the keys as labels and
// whose CSINode registered them all.
func topologyForKeys(nodes corelisters.NodeLister, keys []string, registered map[string][]string) ([]term, error) {
	sel := labels.NewSelector()
	for _, k := range keys {
		req, err := labels.NewRequirement(k, selection.Exists, nil)
		if err != nil {
			return nil, fmt.Errorf("topology key %q: %w", k, err)
		}
		sel = sel.Add(*req)
	}
	list, err := nodes.List(sel)
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var terms []term
	for _, n := range list {
		reg, ok := registered[n.Name]
		if !ok || slices.ContainsFunc(keys, func(k string) bool { return !slices.Contains(reg, k) }) {
			continue
		}
		if t, ok := termFromLabels(n.Labels, keys); ok {
			terms = append(terms, t)
		}
	}
	return terms, nil
}

// stsSpreadOffset is Kubernetes' StatefulSet spreading heuristic: PVCs named
// claim-set-N hash only "set" and add N, so replicas rotate across zones
// while the claims of one replica land together.
func stsSpreadOffset(pvcName string) uint32 {
	base, index := pvcName, uint32(0)
	if dash := strings.LastIndexByte(pvcName, '-'); dash != -1 {
		if id, err := strconv.ParseUint(pvcName[dash+1:], 10, 32); err == nil {
			index = uint32(id)
			base = pvcName[:dash]
			if d := strings.LastIndexByte(base, '-'); d != -1 {
				base = base[d+1:]
			}
		}
	}
	h := fnv.New32()
	h.Write([]byte(base))
	return h.Sum32() + index
}

// nodeAffinity turns CreateVolume's accessible_topology into the PV's
// required node affinity (one term per topology, one In per key).
func nodeAffinity(accessible []*csi.Topology) *v1.VolumeNodeAffinity {
	var terms []v1.NodeSelectorTerm
	for _, topo := range accessible {
		if len(topo.GetSegments()) == 0 {
			continue
		}
		keys := make([]string, 0, len(topo.Segments))
		for k := range topo.Segments {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var exprs []v1.NodeSelectorRequirement
		for _, k := range keys {
			exprs = append(exprs, v1.NodeSelectorRequirement{Key: k, Operator: v1.NodeSelectorOpIn, Values: []string{topo.Segments[k]}})
		}
		terms = append(terms, v1.NodeSelectorTerm{MatchExpressions: exprs})
	}
	if len(terms) == 0 {
		return nil
	}
	return &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: terms}}
}
