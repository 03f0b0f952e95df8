package snapshotter

//lint:file-ignore SA1019 the snapshot client module (client/v8) generates no apply configurations, so its fake package has no NewClientset: NewSimpleClientset is its only fake.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	fakediscovery "k8s.io/client-go/discovery/fake"

	"github.com/csi-hub/csi-hub/internal/hub"
)

func servedSnapshotResources(names ...string) []*metav1.APIResourceList {
	list := &metav1.APIResourceList{GroupVersion: hub.SnapshotGroupVersion}
	for _, n := range names {
		list.APIResources = append(list.APIResources, metav1.APIResource{Name: n})
	}
	return []*metav1.APIResourceList{list}
}

func TestCRDsServed(t *testing.T) {
	client := snapfake.NewSimpleClientset()
	disc := client.Discovery().(*fakediscovery.FakeDiscovery)
	api := hub.NewSnapshotAPI(client, 0)
	ctx := context.Background()

	if ok, err := api.CRDsServed(ctx); ok || err != nil {
		t.Errorf("no group: served=%v err=%v, want false, nil", ok, err)
	}
	disc.Resources = servedSnapshotResources("volumesnapshots", "volumesnapshotcontents")
	if ok, _ := api.CRDsServed(ctx); ok {
		t.Error("served without volumesnapshotclasses")
	}
	disc.Resources = servedSnapshotResources("volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses")
	if ok, err := api.CRDsServed(ctx); !ok || err != nil {
		t.Errorf("all served: %v %v", ok, err)
	}
}

// WaitReady blocks while the CRDs are absent and returns once they appear,
// with the informers obtained before (by a controller's New) synced.
func TestWaitReadyWhenCRDsAppear(t *testing.T) {
	client := &switchableDiscovery{Clientset: snapfake.NewSimpleClientset()}
	api := hub.NewSnapshotAPI(client, 0)
	api.PollInterval = 20 * time.Millisecond
	contents := fakeInformer(api, &snapv1.VolumeSnapshotContent{})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- api.WaitReady(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("WaitReady returned %v without the CRDs", err)
	case <-time.After(200 * time.Millisecond):
	}
	if api.Ready() {
		t.Fatal("Ready() without the CRDs")
	}
	client.served.Store(true)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitReady did not return after the CRDs appeared")
	}
	if !api.Ready() || !contents.HasSynced() {
		t.Errorf("Ready=%v contents synced=%v", api.Ready(), contents.HasSynced())
	}
	// A second caller returns at once.
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	defer scancel()
	if err := api.WaitReady(sctx); err != nil {
		t.Errorf("second WaitReady: %v", err)
	}
}

func TestWaitReadyHonoursContext(t *testing.T) {
	api := hub.NewSnapshotAPI(snapfake.NewSimpleClientset(), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := api.WaitReady(ctx); err == nil {
		t.Error("WaitReady without CRDs returned nil when its context ended")
	}
}

// switchableDiscovery serves the snapshot group once served is set; safe to
// flip while the poller reads it (the fake's Resources field is not).
type switchableDiscovery struct {
	*snapfake.Clientset
	served atomic.Bool
}

func (s *switchableDiscovery) Discovery() discovery.DiscoveryInterface {
	return &gatedDiscovery{FakeDiscovery: s.Clientset.Discovery().(*fakediscovery.FakeDiscovery), served: &s.served}
}

type gatedDiscovery struct {
	*fakediscovery.FakeDiscovery
	served *atomic.Bool
}

func (g *gatedDiscovery) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	if !g.served.Load() || gv != hub.SnapshotGroupVersion {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: "snapshot.storage.k8s.io"}, gv)
	}
	return servedSnapshotResources("volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses")[0], nil
}
