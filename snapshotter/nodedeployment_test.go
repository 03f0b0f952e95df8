package snapshotter

import (
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// With --node-deployment (NodeName set) only contents the snapshot-controller
// labelled managed-by=<this node> are queued, as csi-snapshotter's
// label-filtered informer sees only those; without it, every content of the driver.
func TestNodeDeploymentContentFilter(t *testing.T) {
	content := func(name, node string) *snapv1.VolumeSnapshotContent {
		c := &snapv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: snapv1.VolumeSnapshotContentSpec{Driver: "d"}}
		if node != "" {
			c.Labels = map[string]string{LabelManagedBy: node}
		}
		return c
	}
	for _, tc := range []struct {
		node string
		want int
	}{{"", 3}, {"n1", 1}} {
		q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
		c := &Controller{d: Deps{DriverConn: hub.DriverConn{Driver: "d"}}, cfg: Config{NodeName: tc.node}, queue: q}
		c.enqueue(content("mine", "n1"))
		c.enqueue(content("other", "n2"))
		c.enqueue(content("unlabelled", ""))
		if q.Len() != tc.want {
			t.Errorf("NodeName %q: %d contents queued, want %d", tc.node, q.Len(), tc.want)
		}
		if tc.node != "" {
			if k, _ := q.Get(); k != "mine" {
				t.Errorf("queued %q, want the content managed by this node", k)
			}
		}
		q.ShutDown()
	}
}
