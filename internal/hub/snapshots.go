package hub

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	snapscheme "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/scheme"
	snapinformers "github.com/kubernetes-csi/external-snapshotter/client/v8/informers/externalversions"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

// SnapshotGroupVersion is the API served by the snapshot CRDs
// (github.com/kubernetes-csi/external-snapshotter/client/v8 config/crd).
const SnapshotGroupVersion = "snapshot.storage.k8s.io/v1"

// GroupSnapshotGroupVersion is the API of the group snapshot CRDs (same
// module); they are optional even where the snapshot CRDs are installed.
const GroupSnapshotGroupVersion = "groupsnapshot.storage.k8s.io/v1"

var groupSnapshotResources = []string{"volumegroupsnapshots", "volumegroupsnapshotcontents", "volumegroupsnapshotclasses"}

// snapshotResources must all be served before the snapshot informers start:
// the snapshotter needs contents and classes, restore needs snapshots too.
var snapshotResources = []string{"volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses"}

// DefaultSnapshotCRDPoll is how often discovery is asked whether the snapshot
// CRDs have been installed.
const DefaultSnapshotCRDPoll = 10 * time.Second

func init() {
	// The one event recorder uses client-go's scheme to name the objects it
	// reports on; without the snapshot types there, events on a
	// VolumeSnapshotContent fail with "no kind is registered". The official
	// csi-snapshotter registers them the same way.
	utilruntime.Must(snapscheme.AddToScheme(scheme.Scheme))
}

// SnapshotAPI is the process's one client and one informer factory for
// snapshot.storage.k8s.io, shared by the snapshotter and by the provisioner's
// restore-from-snapshot. The CRDs are optional in a cluster: the factory is
// started only once discovery serves them (see WaitReady), so a cluster
// without them gets no failing list/watch loops, and the CRDs may be
// installed while the hub runs.
type SnapshotAPI struct {
	Client    snapclient.Interface
	Informers snapinformers.SharedInformerFactory
	// PollInterval is the discovery poll period while the CRDs are absent.
	PollInterval time.Duration

	detectOnce sync.Once
	ready      chan struct{} // closed once the CRDs are served and the factory started
	stop       <-chan struct{}
}

// snapshotAPIEntry builds the hub's SnapshotAPI once, on first use.
type snapshotAPIEntry struct {
	once sync.Once
	api  *SnapshotAPI
	err  error
}

// Snapshots returns the hub's SnapshotAPI, building it on first use. Its
// client is built from h.RestConfig and shares h.Kube's rate limiter, so
// snapshot requests count against the one --kube-api-qps budget and their
// writes are recorded as steps like every other write.
func (h *Hub) Snapshots() (*SnapshotAPI, error) {
	e := &h.snapshots
	e.once.Do(func() {
		cfg := rest.CopyConfig(h.RestConfig)
		if cfg.RateLimiter == nil {
			// A config without a shared bucket would give this client its own.
			if rl := h.Kube.CoreV1().RESTClient().GetRateLimiter(); rl != nil {
				cfg.RateLimiter = rl
			}
		}
		client, err := snapclient.NewForConfig(cfg)
		if err != nil {
			e.err = fmt.Errorf("building the snapshot.storage.k8s.io client: %w", err)
			return
		}
		e.api = NewSnapshotAPI(client, h.Opts.Resync)
	})
	return e.api, e.err
}

// NewSnapshotAPI wraps client (a fake one in unit tests).
func NewSnapshotAPI(client snapclient.Interface, resync time.Duration) *SnapshotAPI {
	return &SnapshotAPI{
		Client:       client,
		Informers:    snapinformers.NewSharedInformerFactoryWithOptions(client, resync, snapinformers.WithTransform(DropManagedFields)),
		PollInterval: DefaultSnapshotCRDPoll,
		ready:        make(chan struct{}),
	}
}

// CRDsServed asks discovery whether every snapshot resource is served now.
func (s *SnapshotAPI) CRDsServed(ctx context.Context) (bool, error) {
	return s.served(SnapshotGroupVersion, snapshotResources)
}

// GroupCRDsServed asks discovery whether every group snapshot resource is served now.
func (s *SnapshotAPI) GroupCRDsServed(ctx context.Context) (bool, error) {
	return s.served(GroupSnapshotGroupVersion, groupSnapshotResources)
}

func (s *SnapshotAPI) served(groupVersion string, resources []string) (bool, error) {
	// discovery calls take no context
	list, err := s.Client.Discovery().ServerResourcesForGroupVersion(groupVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	served := map[string]bool{}
	for _, r := range list.APIResources {
		served[r.Name] = true
	}
	for _, r := range resources {
		if !served[r] {
			return false, nil
		}
	}
	return true, nil
}

// WaitReady blocks until the snapshot CRDs are served and every informer
// obtained from s.Informers has synced, or ctx ends (then it returns
// ctx.Err()). The first call starts the detection, which lives as long as
// that call's ctx: pass a controller's Run ctx. Informers obtained after the
// factory started are started by a later WaitReady.
func (s *SnapshotAPI) WaitReady(ctx context.Context) error {
	s.detectOnce.Do(func() {
		s.stop = ctx.Done()
		go s.detect(ctx)
	})
	select {
	case <-s.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.Informers.Start(s.stop)
	for typ, ok := range s.Informers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer cache of %v did not sync: %w", typ, context.Cause(ctx))
		}
	}
	return nil
}

// Ready reports whether the CRDs were found and the factory started.
func (s *SnapshotAPI) Ready() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// detect polls discovery until the CRDs are served. Discovery is polled rather
// than CustomResourceDefinitions watched: one small GET every PollInterval
// that the default system:discovery role allows, against a watch that needs
// extra RBAC and keeps every CRD of the cluster (with its OpenAPI schema) in
// memory; and discovery says "served", which is what the informers need,
// where a CRD object exists before it is established.
func (s *SnapshotAPI) detect(ctx context.Context) {
	_ = s.waitServed(ctx, "Snapshot", SnapshotGroupVersion, s.CRDsServed)
	if ctx.Err() != nil {
		return
	}
	klog.InfoS("Snapshot CRDs are served; starting snapshot informers", "groupVersion", SnapshotGroupVersion)
	s.Informers.Start(ctx.Done())
	close(s.ready)
	<-ctx.Done()
	s.Informers.Shutdown()
}

// WaitGroupReady blocks until the snapshot CRDs and then the group snapshot
// CRDs are served (polling discovery, so they may be installed while the hub
// runs), calls register once to obtain the group informers from the one
// factory, and starts them and waits for their caches. The group informers
// are only obtained once their CRDs exist: started earlier they would never
// sync and would hold up every WaitReady of the snapshot controllers.
func (s *SnapshotAPI) WaitGroupReady(ctx context.Context, register func() error) error {
	if err := s.WaitReady(ctx); err != nil {
		return err
	}
	if err := s.waitServed(ctx, "Group snapshot", GroupSnapshotGroupVersion, s.GroupCRDsServed); err != nil {
		return err
	}
	klog.InfoS("Group snapshot CRDs are served; starting group snapshot informers", "groupVersion", GroupSnapshotGroupVersion)
	if err := register(); err != nil {
		return err
	}
	return s.WaitReady(ctx)
}

// waitServed polls discovery (served) until the CRDs of groupVersion are
// served or ctx ends, saying once that they are absent; what names them in
// the log ("Snapshot", "Group snapshot").
func (s *SnapshotAPI) waitServed(ctx context.Context, what, groupVersion string, served func(context.Context) (bool, error)) error {
	logger := klog.FromContext(ctx)
	saidAbsent := false
	return wait.PollUntilContextCancel(ctx, s.PollInterval, true, func(ctx context.Context) (bool, error) {
		ok, err := served(ctx)
		switch {
		case err != nil:
			logger.V(2).Info(what+" API discovery failed; will retry", "groupVersion", groupVersion, "err", err)
		case !ok && !saidAbsent:
			saidAbsent = true
			logger.Info(what+" CRDs are not installed; "+strings.ToLower(what)+"s are off until they appear",
				"groupVersion", groupVersion, "pollInterval", s.PollInterval)
		}
		return ok, nil
	})
}
