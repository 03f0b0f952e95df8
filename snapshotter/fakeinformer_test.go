package snapshotter

import (
	"context"
	"fmt"
	"time"

	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// fakeInformer registers in api's factory, for obj's type, the informer the
// factory would make, but on a ListWatch that tells client-go's reflector
// what the client says about streaming lists: a unit test's client is a fake
// clientset (or wraps one), which says it cannot stream them. Call it before
// anything obtains that type from the factory (a controller's New, a test);
// from then on they all get this informer.
//
// The snapshot module's generated informers (client/v8 v8.7.0) hand the
// reflector a bare cache.ListWatch, which says nothing; with client-go's
// WatchListClient on (its default since 1.35) the reflector then asks the
// fake for a streaming list, never gets the initial-events-end bookmark, and
// the informer never syncs. client-go's own generated informers wrap their
// ListWatch the same way as here (cache.ToListWatcherWithWatchListSemantics,
// client-go v0.37.2 tools/cache/listwatch.go:157), and the reflector then
// lists and watches (tools/cache/reflector.go:362). Only the fake-backed
// informers opt out; the real ones of the integration tests keep client-go's
// setting, as in production.
func fakeInformer(api *hub.SnapshotAPI, obj runtime.Object) cache.SharedIndexInformer {
	return api.Informers.InformerFor(obj, func(client snapclient.Interface, resync time.Duration) cache.SharedIndexInformer {
		// The indexers of the generated informers.
		return cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(listWatch(client, obj), client),
			obj, resync, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	})
}

func listWatch(c snapclient.Interface, obj runtime.Object) *cache.ListWatch {
	switch obj.(type) {
	case *snapv1.VolumeSnapshotContent:
		return listWatchOf[*snapv1.VolumeSnapshotContentList](c.SnapshotV1().VolumeSnapshotContents())
	case *snapv1.VolumeSnapshotClass:
		return listWatchOf[*snapv1.VolumeSnapshotClassList](c.SnapshotV1().VolumeSnapshotClasses())
	case *groupv1.VolumeGroupSnapshotContent:
		return listWatchOf[*groupv1.VolumeGroupSnapshotContentList](c.GroupsnapshotV1().VolumeGroupSnapshotContents())
	case *groupv1.VolumeGroupSnapshotClass:
		return listWatchOf[*groupv1.VolumeGroupSnapshotClassList](c.GroupsnapshotV1().VolumeGroupSnapshotClasses())
	}
	panic(fmt.Sprintf("fakeInformer: no ListWatch for %T", obj))
}

// listerWatcher is the List and Watch of a typed client of cluster-scoped
// objects.
type listerWatcher[L runtime.Object] interface {
	List(context.Context, metav1.ListOptions) (L, error)
	Watch(context.Context, metav1.ListOptions) (watch.Interface, error)
}

func listWatchOf[L runtime.Object](c listerWatcher[L]) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.List(ctx, o)
		},
		WatchFuncWithContext: c.Watch,
	}
}
