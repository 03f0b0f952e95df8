package provisioner

import (
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The managed-by label of a node's CSIStorageCapacity objects, as
// external-provisioner's getNameWithMaxLength makes it (values computed with
// the sidecar's function).
func TestNameWithMaxLength(t *testing.T) {
	long := strings.Repeat("n", 60)
	for _, c := range []struct{ base, suffix, want string }{
		{"external-provisioner", "node-1", "external-provisioner-node-1"},
		{"external-provisioner", "worker-with-a-rather-long-name-0123456789abcd", "external-" + fnvHex("external-provisioner") + "-worker-with-a-rather-long-name-0123456789abcd"},
		{"external-provisioner", long, "external-provisioner-" + fnvHex("external-provisioner-"+long)},
	} {
		got := nameWithMaxLength(c.base, c.suffix, 63)
		if got != c.want || len(got) > 63 {
			t.Errorf("nameWithMaxLength(%q, %q) = %q (%d), want %q", c.base, c.suffix, got, len(got), c.want)
		}
	}
}

func fnvHex(s string) string {
	// FNV-32a, written out independently of the code under test.
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	const digits = "0123456789abcdef"
	out := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		out[i] = digits[h&0xf]
		h >>= 4
	}
	return string(out)
}

// The competition's waits: base * 2^lost attempts, capped at max, minus up
// to one base delay of jitter; forget starts again from the base.
func TestNodeDeploymentDelays(t *testing.T) {
	n := &nodeDeployment{baseDelay: 20 * time.Second, maxDelay: time.Minute,
		attempts: map[types.UID]int{}, until: map[types.UID]time.Time{}}
	uid := types.UID("u")
	for i, want := range []time.Duration{20 * time.Second, 40 * time.Second, time.Minute, time.Minute} {
		n.mu.Lock()
		d := n.delayLocked(uid)
		n.mu.Unlock()
		if d > want || d < want-n.baseDelay {
			t.Errorf("attempt %d: delay %s, want in [%s, %s]", i, d, want-n.baseDelay, want)
		}
	}
	n.forget(uid)
	if w := n.waitFor(uid); w > 20*time.Second || w < 0 {
		t.Errorf("after forget: wait %s, want at most the base delay", w)
	}
	if w2 := n.waitFor(uid); w2 > n.baseDelay {
		t.Errorf("second look at a waiting claim restarted its wait: %s", w2)
	}
}

// A PV is deleted by the node whose segment its node affinity selects.
func TestNodeDeploymentDeletesHere(t *testing.T) {
	pv := func(key, op string, values ...string) *v1.PersistentVolume {
		return &v1.PersistentVolume{Spec: v1.PersistentVolumeSpec{NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{
			NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{
				{Key: key, Operator: v1.NodeSelectorOperator(op), Values: values}}}}}}}}
	}
	n := &nodeDeployment{segment: map[string]string{"topology.x/node": "n1"}}
	n.info = nodeInfo(n.segment)
	for _, c := range []struct {
		pv   *v1.PersistentVolume
		want bool
	}{
		{pv("topology.x/node", "In", "n1"), true},
		{pv("topology.x/node", "In", "n2"), false},
		{pv("topology.x/node", "NotIn", "n1"), false},
		{pv("topology.x/other", "Exists"), false},
		{&v1.PersistentVolume{}, true},
	} {
		if got := n.deletesHere(c.pv); got != c.want {
			t.Errorf("deletesHere(%+v) = %v, want %v", c.pv.Spec.NodeAffinity, got, c.want)
		}
	}
	if !(*nodeDeployment)(nil).deletesHere(pv("k", "In", "v")) {
		t.Error("without --node-deployment every PV is this process's")
	}
}

func nodeInfo(segment map[string]string) *csi.NodeGetInfoResponse {
	return &csi.NodeGetInfoResponse{NodeId: "n", AccessibleTopology: &csi.Topology{Segments: segment}}
}
