package provisioner

import (
	"fmt"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
)

// external-provisioner v6.4 (#1582): with immediate binding, one topology set
// per distinct key set the driver registered, and a node only under keys its
// own CSINode registered. The old rule (keys of the first CSINode by name)
// would drop the zone-only node "b" or report "c", which has the labels but
// not the driver.
func TestImmediateTopologyPerRegisteredKeySet(t *testing.T) {
	nodeIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	csiIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	add := func(name string, labels map[string]string, keys ...string) {
		if err := nodeIdx.Add(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
			t.Fatal(err)
		}
		cn := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if keys != nil {
			cn.Spec.Drivers = []storagev1.CSINodeDriver{{Name: testDriver, NodeID: name, TopologyKeys: keys}}
		}
		if err := csiIdx.Add(cn); err != nil {
			t.Fatal(err)
		}
	}
	add("a", map[string]string{zoneKey: "za", rackKey: "r1"}, rackKey, zoneKey)
	add("b", map[string]string{zoneKey: "zb", rackKey: "r2"}, zoneKey)
	add("c", map[string]string{zoneKey: "zc", rackKey: "r3"}) // labels, no driver
	r := topologyRequest{driver: testDriver, claimName: "data", immediate: true,
		csiNodes: storagelisters.NewCSINodeLister(csiIdx), nodes: corelisters.NewNodeLister(nodeIdx)}
	req, err := accessibilityRequirements(r)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range topoSegments(req.Requisite) {
		got = append(got, fmt.Sprint(s))
	}
	slices.Sort(got)
	want := []string{
		fmt.Sprint(map[string]string{rackKey: "r1", zoneKey: "za"}),
		fmt.Sprint(map[string]string{zoneKey: "za"}),
		fmt.Sprint(map[string]string{zoneKey: "zb"}),
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("requisite = %v, want %v", got, want)
	}

	// Delayed binding on "b": only b's key set, only nodes registering it.
	r.selectedNode = &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{zoneKey: "zb", rackKey: "r2"}}}
	req, err = accessibilityRequirements(r)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, s := range topoSegments(req.Requisite) {
		got = append(got, fmt.Sprint(s))
	}
	slices.Sort(got)
	want = []string{fmt.Sprint(map[string]string{zoneKey: "za"}), fmt.Sprint(map[string]string{zoneKey: "zb"})}
	if !slices.Equal(got, want) {
		t.Fatalf("delayed requisite = %v, want %v", got, want)
	}
}
