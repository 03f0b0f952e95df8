package capacity

import (
	"testing"

	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Objects read back from the API must map to the same key as the item they
// were created for, whatever the API did to an empty selector.
func TestCapacityKeys(t *testing.T) {
	seg := map[string]string{"zone": "a", "rack": "1"}
	obj := &storagev1.CSIStorageCapacity{StorageClassName: "fast", NodeTopology: &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "1", "zone": "a"}}}
	if objectKey(obj) != itemKey("fast", seg) {
		t.Errorf("objectKey %q != itemKey %q", objectKey(obj), itemKey("fast", seg))
	}
	for _, topo := range []*metav1.LabelSelector{nil, {}, {MatchLabels: map[string]string{}}} {
		o := &storagev1.CSIStorageCapacity{StorageClassName: "fast", NodeTopology: topo}
		if objectKey(o) != itemKey("fast", map[string]string{}) {
			t.Errorf("selector %v: key %q, want the empty segment's", topo, objectKey(o))
		}
	}
	if itemKey("fast", seg) == itemKey("slow", seg) || itemKey("fast", seg) == itemKey("fast", map[string]string{"zone": "a"}) {
		t.Error("different items share a key")
	}
	q := func(s string) *resource.Quantity { v := resource.MustParse(s); return &v }
	if !sameQuantity(q("1Gi"), q("1024Mi")) || sameQuantity(q("1Gi"), q("1G")) || !sameQuantity(nil, nil) || sameQuantity(nil, q("0")) {
		t.Error("sameQuantity compares wrongly")
	}
}
