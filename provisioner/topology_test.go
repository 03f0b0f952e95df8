package provisioner

import (
	"reflect"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
)

const (
	testDriver = "test.csi.io"
	zoneKey    = "topology.test/zone"
	rackKey    = "topology.test/rack"
)

// topologyFixture is three nodes in two zones, each with a CSINode for the
// driver, plus a node without the driver.
func topologyFixture(t *testing.T) (storagelisters.CSINodeLister, corelisters.NodeLister, map[string]*v1.Node) {
	t.Helper()
	nodeIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	csiIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	nodes := map[string]*v1.Node{}
	add := func(name, zone, rack string, driver bool) {
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
		if zone != "" {
			n.Labels[zoneKey] = zone
			n.Labels[rackKey] = rack
		}
		nodes[name] = n
		if err := nodeIdx.Add(n); err != nil {
			t.Fatal(err)
		}
		cn := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if driver {
			cn.Spec.Drivers = []storagev1.CSINodeDriver{{Name: testDriver, NodeID: name, TopologyKeys: []string{zoneKey, rackKey}}}
		}
		if err := csiIdx.Add(cn); err != nil {
			t.Fatal(err)
		}
	}
	add("n1", "a", "r1", true)
	add("n2", "b", "r1", true)
	add("n3", "b", "r2", true)
	add("plain", "", "", false)
	return storagelisters.NewCSINodeLister(csiIdx), corelisters.NewNodeLister(nodeIdx), nodes
}

func segs(zone, rack string) map[string]string {
	return map[string]string{zoneKey: zone, rackKey: rack}
}

func topoSegments(ts []*csi.Topology) []map[string]string {
	out := make([]map[string]string, len(ts))
	for i, t := range ts {
		out[i] = t.Segments
	}
	return out
}

func TestAccessibilityRequirements(t *testing.T) {
	csiNodes, nodeLister, nodes := topologyFixture(t)
	allowedZoneB := []v1.TopologySelectorTerm{{MatchLabelExpressions: []v1.TopologySelectorLabelRequirement{
		{Key: zoneKey, Values: []string{"b"}}, {Key: rackKey, Values: []string{"r2", "r1"}},
	}}}
	all := []map[string]string{segs("a", "r1"), segs("b", "r1"), segs("b", "r2")}
	for _, tc := range []struct {
		name          string
		node          string
		allowed       []v1.TopologySelectorTerm
		strict        bool
		immediate     bool
		wantNil       bool
		wantRequisite []map[string]string
		wantPreferred []map[string]string // nil: only check the first
		wantFirst     map[string]string
		errSub        string
	}{
		{name: "immediate, no constraints, --immediate-topology=false", wantNil: true},
		{name: "immediate aggregates every node with the keys", immediate: true, wantRequisite: all},
		{name: "immediate with allowedTopologies", allowed: allowedZoneB, wantRequisite: []map[string]string{segs("b", "r1"), segs("b", "r2")}},
		{name: "selected node is preferred first", node: "n3", wantRequisite: all,
			wantPreferred: []map[string]string{segs("b", "r2"), segs("a", "r1"), segs("b", "r1")}},
		{name: "selected node within allowedTopologies", node: "n2", allowed: allowedZoneB,
			wantRequisite: []map[string]string{segs("b", "r1"), segs("b", "r2")},
			wantPreferred: []map[string]string{segs("b", "r1"), segs("b", "r2")}},
		{name: "strict: only the selected node", node: "n1", strict: true,
			wantRequisite: []map[string]string{segs("a", "r1")}, wantPreferred: []map[string]string{segs("a", "r1")}},
		{name: "strict: selected node outside allowedTopologies", node: "n1", strict: true, allowed: allowedZoneB, errSub: "not in the StorageClass allowedTopologies"},
		{name: "selected node outside allowedTopologies", node: "n1", allowed: allowedZoneB, errSub: "not in requisite"},
		{name: "selected node without the driver", node: "plain", errSub: "no topology key found on CSINode plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := topologyRequest{driver: testDriver, claimName: "data", allowed: tc.allowed, strict: tc.strict,
				immediate: tc.immediate, csiNodes: csiNodes, nodes: nodeLister}
			if tc.node != "" {
				r.selectedNode = nodes[tc.node]
			}
			req, err := accessibilityRequirements(r)
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("error = %v, want one containing %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantNil {
				if req != nil {
					t.Fatalf("requirement = %v, want nil", req)
				}
				return
			}
			if got := topoSegments(req.Requisite); !reflect.DeepEqual(got, tc.wantRequisite) {
				t.Errorf("requisite = %v, want %v", got, tc.wantRequisite)
			}
			if tc.wantPreferred != nil {
				if got := topoSegments(req.Preferred); !reflect.DeepEqual(got, tc.wantPreferred) {
					t.Errorf("preferred = %v, want %v", got, tc.wantPreferred)
				}
			}
			if len(req.Preferred) != len(req.Requisite) {
				t.Errorf("preferred has %d entries, requisite %d: preferred must be a permutation", len(req.Preferred), len(req.Requisite))
			}
		})
	}

	// The selected node has no CSINode at all.
	_, err := accessibilityRequirements(topologyRequest{driver: testDriver, claimName: "x", csiNodes: csiNodes, nodes: nodeLister,
		selectedNode: &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ghost"}}})
	if err == nil || !strings.Contains(err.Error(), `"ghost" has no CSINode`) {
		t.Errorf("node without CSINode: error %v", err)
	}
}

// Replicas of a StatefulSet (claim-set-0, -1, -2) must start on different
// terms, rotating in order, as the sidecar spreads them.
func TestStatefulSetSpreading(t *testing.T) {
	csiNodes, nodeLister, _ := topologyFixture(t)
	first := map[string]bool{}
	var starts []int
	for _, name := range []string{"www-web-0", "www-web-1", "www-web-2"} {
		req, err := accessibilityRequirements(topologyRequest{driver: testDriver, claimName: name, immediate: true, csiNodes: csiNodes, nodes: nodeLister})
		if err != nil {
			t.Fatal(err)
		}
		f := req.Preferred[0].Segments
		first[f[zoneKey]+"/"+f[rackKey]] = true
		for i, r := range req.Requisite {
			if reflect.DeepEqual(r.Segments, f) {
				starts = append(starts, i)
			}
		}
	}
	if len(first) != 3 {
		t.Errorf("replicas start on %v, want 3 different terms", first)
	}
	for i := 1; i < len(starts); i++ {
		if starts[i] != (starts[i-1]+1)%3 {
			t.Errorf("start offsets %v do not rotate by one per replica", starts)
		}
	}
	// Two claims of the same replica hash the same set name: same start.
	a, _ := accessibilityRequirements(topologyRequest{driver: testDriver, claimName: "data-web-1", immediate: true, csiNodes: csiNodes, nodes: nodeLister})
	b, _ := accessibilityRequirements(topologyRequest{driver: testDriver, claimName: "logs-web-1", immediate: true, csiNodes: csiNodes, nodes: nodeLister})
	if !reflect.DeepEqual(a.Preferred[0].Segments, b.Preferred[0].Segments) {
		t.Errorf("claims of one replica start apart: %v vs %v", a.Preferred[0], b.Preferred[0])
	}
}

func TestFlattenAllowed(t *testing.T) {
	got := flattenAllowed([]v1.TopologySelectorTerm{
		{MatchLabelExpressions: []v1.TopologySelectorLabelRequirement{
			{Key: "zone", Values: []string{"z1", "z2"}}, {Key: "rack", Values: []string{"rA", "rB"}},
		}},
		{MatchLabelExpressions: []v1.TopologySelectorLabelRequirement{{Key: "zone", Values: []string{"z9"}}}},
	})
	var s []string
	for _, t := range got {
		s = append(s, t.String())
	}
	want := []string{"{rack=rA,zone=z1}", "{rack=rA,zone=z2}", "{rack=rB,zone=z1}", "{rack=rB,zone=z2}", "{zone=z9}"}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("flattenAllowed = %v, want %v", s, want)
	}
}

func TestNodeAffinity(t *testing.T) {
	if nodeAffinity(nil) != nil || nodeAffinity([]*csi.Topology{{}}) != nil {
		t.Error("no topology must give no node affinity")
	}
	got := nodeAffinity([]*csi.Topology{{Segments: segs("a", "r1")}, {Segments: map[string]string{zoneKey: "b"}}})
	want := &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{
		{MatchExpressions: []v1.NodeSelectorRequirement{
			{Key: rackKey, Operator: v1.NodeSelectorOpIn, Values: []string{"r1"}},
			{Key: zoneKey, Operator: v1.NodeSelectorOpIn, Values: []string{"a"}},
		}},
		{MatchExpressions: []v1.NodeSelectorRequirement{{Key: zoneKey, Operator: v1.NodeSelectorOpIn, Values: []string{"b"}}}},
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("nodeAffinity = %+v, want %+v", got, want)
	}
}
