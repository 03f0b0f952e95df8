package snapshotter

//lint:file-ignore SA1019 the snapshot client module (client/v8) generates no apply configurations, so its fake package has no NewClientset: NewSimpleClientset is its only fake.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	fakediscovery "k8s.io/client-go/discovery/fake"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// The group path waits for the group CRDs separately: the snapshot CRDs
// alone start the snapshot informers (WaitReady returns) but not the group
// ones, which are obtained and synced only once their CRDs appear.
func TestWaitGroupReadyWhenGroupCRDsAppear(t *testing.T) {
	client := &groupDiscovery{Clientset: snapfake.NewSimpleClientset()}
	api := hub.NewSnapshotAPI(client, 0)
	api.PollInterval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var registered atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- api.WaitGroupReady(ctx, func() error {
			registered.Store(true)
			fakeInformer(api, &groupv1.VolumeGroupSnapshotContent{})
			return nil
		})
	}()
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if err := api.WaitReady(sctx); err != nil {
		t.Fatalf("snapshot CRDs are served, but WaitReady: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("WaitGroupReady returned %v without the group CRDs", err)
	case <-time.After(200 * time.Millisecond):
	}
	if registered.Load() {
		t.Fatal("group informers obtained before the group CRDs are served")
	}
	client.groups.Store(true)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitGroupReady did not return after the group CRDs appeared")
	}
	if !registered.Load() || !api.Informers.Groupsnapshot().V1().VolumeGroupSnapshotContents().Informer().HasSynced() {
		t.Error("group informers not registered and synced")
	}
}

// groupDiscovery always serves the snapshot group and the group snapshot
// group once groups is set.
type groupDiscovery struct {
	*snapfake.Clientset
	groups atomic.Bool
}

func (s *groupDiscovery) Discovery() discovery.DiscoveryInterface {
	return &groupGatedDiscovery{FakeDiscovery: s.Clientset.Discovery().(*fakediscovery.FakeDiscovery), groups: &s.groups}
}

type groupGatedDiscovery struct {
	*fakediscovery.FakeDiscovery
	groups *atomic.Bool
}

func (g *groupGatedDiscovery) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	switch {
	case gv == hub.SnapshotGroupVersion:
		return servedSnapshotResources("volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses")[0], nil
	case gv == hub.GroupSnapshotGroupVersion && g.groups.Load():
		return &metav1.APIResourceList{GroupVersion: gv, APIResources: []metav1.APIResource{
			{Name: "volumegroupsnapshots"}, {Name: "volumegroupsnapshotcontents"}, {Name: "volumegroupsnapshotclasses"}}}, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: "groupsnapshot.storage.k8s.io"}, gv)
}
