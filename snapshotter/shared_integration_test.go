package snapshotter_test

import (
	"sync/atomic"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/tools/cache"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// TestOneWatchPerResource: a second consumer of the hub's snapshot API (as
// the provisioner's restore is) gets its informers from the same factory, so
// the process opens one watch per snapshot resource however many
// controllers read it, and the second consumer sees the same objects.
func TestOneWatchPerResource(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "shared", fakedriver.Options{})
	watches := &watchCounter{}
	e.wrap = watches.wrap
	var sawContents, sawSnapshots atomic.Int32
	e.startHub(testConfig(), func(h *hub.Hub) error {
		api, err := h.Snapshots()
		if err != nil {
			return err
		}
		count := func(n *atomic.Int32) cache.ResourceEventHandlerFuncs {
			return cache.ResourceEventHandlerFuncs{AddFunc: func(any) { n.Add(1) }}
		}
		if _, err := api.Informers.Snapshot().V1().VolumeSnapshotContents().Informer().AddEventHandler(count(&sawContents)); err != nil {
			return err
		}
		_, err = api.Informers.Snapshot().V1().VolumeSnapshots().Informer().AddEventHandler(count(&sawSnapshots))
		return err
	})
	e.sourcePVC("data")
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, nil)
	e.snapshot("snap", "data", class)
	e.waitReady("snap", time.Minute)
	e.poll(10*time.Second, "the second consumer to see the objects", func() (bool, error) {
		return sawContents.Load() > 0 && sawSnapshots.Load() > 0, nil
	})
	// The hub's informers run with client-go's own WatchListClient setting
	// (nothing in the test binary overrides it): on, as by default, they
	// stream their lists.
	streaming := clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient)
	for _, r := range []string{"volumesnapshotcontents", "volumesnapshotclasses", "volumesnapshots"} {
		if n := watches.informers(r); n != 1 {
			t.Errorf("%s watched by %d informers of the hub, want 1", r, n)
		}
		if n := watches.streams(r); streaming != (n > 0) {
			t.Errorf("%s: %d streaming lists with WatchListClient=%v", r, n, streaming)
		}
	}
}
