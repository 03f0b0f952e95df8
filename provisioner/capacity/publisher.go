package capacity

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	storageinformers "k8s.io/client-go/informers/storage/v1"
	"k8s.io/client-go/kubernetes"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
)

// Labels by which the sidecar (and csi-hub) finds its CSIStorageCapacity objects.
const (
	LabelDriverName = "csi.storage.k8s.io/drivername"
	LabelManagedBy  = "csi.storage.k8s.io/managed-by"
	// ManagedByValue is the managed-by label of a central provisioner's
	// objects; a node deployment's is ManagedByValue-<node> (cut to 63).
	ManagedByValue = "external-provisioner"
	capacityKey    = "all"
)

// GetCapacityClient is the CSI call the publisher makes.
type GetCapacityClient interface {
	GetCapacity(ctx context.Context, in *csi.GetCapacityRequest, opts ...grpc.CallOption) (*csi.GetCapacityResponse, error)
}

// Deps is what the publisher uses; the provisioner builds it from its own.
type Deps struct {
	Driver string
	CSI    GetCapacityClient
	// Kube reads the owner chain for --capacity-ownerref-level.
	Kube kubernetes.Interface
	// Writer creates, updates and deletes the CSIStorageCapacity objects,
	// with its own budget (NewWriter), as the sidecar's capacity client:
	// capacity updates neither wait for nor delay provisioning.
	Writer kubernetes.Interface
	// Metrics registers the sidecar's csistoragecapacities_* gauges; nil: none.
	Metrics    *prometheus.Registry
	Capacities storageinformers.CSIStorageCapacityInformer
	Classes    storageinformers.StorageClassInformer
	// CSINodes and Nodes, when set, are watched for changes that move
	// topology segments (nil when the segments are fixed).
	CSINodes storageinformers.CSINodeInformer
	Nodes    coreinformers.NodeInformer
	// Segments are the topology segments to publish capacity for; the
	// provisioner knows the driver's topology.
	Segments func() ([]map[string]string, error)
	Steps    *steps.Recorder
	NewQueue func(name string) hub.Queue
}

// Config is the provisioner's capacity flags, resolved.
type Config struct {
	PollInterval        time.Duration // --capacity-poll-interval
	Threads             int           // --capacity-threads
	ForImmediateBinding bool          // --capacity-for-immediate-binding
	OwnerrefLevel       int           // --capacity-ownerref-level
	// Timeout bounds each GetCapacity call (the provisioner's --timeout).
	Timeout time.Duration
	// Topology: send each segment as GetCapacity's accessible_topology.
	Topology bool
	// ManagedBy is the objects' managed-by label.
	ManagedBy string
	// Controller names the worker in logs and metrics.
	Controller string
}

// Publisher maintains one CSIStorageCapacity object per StorageClass
// of the driver (WaitForFirstConsumer ones unless --capacity-for-immediate-binding)
// and topology segment, in the namespace of $NAMESPACE, with the sidecar's
// labels, so the scheduler can place pods where there is room and the sidecar
// can take the objects over (and back) unchanged.
type Publisher struct {
	d         Deps
	cfg       Config
	namespace string
	owner     *metav1.OwnerReference
	lister    storagelisters.CSIStorageCapacityLister
	queue     hub.Queue
	metrics   *gauges

	mu      sync.Mutex
	created map[string]*storagev1.CSIStorageCapacity // item key -> object the informer may not have yet
}

// NewWriter is the CSIStorageCapacity client: cfg with its own rate limit
// (--kube-api-capacity-qps/-burst).
func NewWriter(cfg *rest.Config, qps float64, burst int) (kubernetes.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(float32(qps), burst)
	return kubernetes.NewForConfig(c)
}

// New builds the publisher; d.CSI's driver must have GET_CAPACITY (the
// provisioner checks). ctx bounds the owner lookup.
func New(ctx context.Context, d Deps, cfg Config) (*Publisher, error) {
	ns := os.Getenv("NAMESPACE")
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		return nil, fmt.Errorf("--enable-capacity: set NAMESPACE (the namespace for CSIStorageCapacity objects) in the environment")
	}
	p := &Publisher{d: d, cfg: cfg, namespace: ns, queue: d.NewQueue("csistoragecapacity"), created: map[string]*storagev1.CSIStorageCapacity{}}
	var err error
	if p.metrics, err = registerGauges(d.Metrics); err != nil {
		return nil, err
	}
	if cfg.OwnerrefLevel >= 0 {
		owner, err := ownerOf(ctx, d.Kube, ns, os.Getenv("POD_NAME"), cfg.OwnerrefLevel)
		if err != nil {
			return nil, fmt.Errorf("--capacity-ownerref-level %d: %w", cfg.OwnerrefLevel, err)
		}
		p.owner = owner
	}
	capInformer := d.Capacities
	p.lister = capInformer.Lister()
	kick := func(any) { p.queue.Add(capacityKey) }
	if _, err := capInformer.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool {
			csc, ok := hub.Object[*storagev1.CSIStorageCapacity](obj)
			return ok && p.managed(csc)
		},
		// Only a removal by someone else needs repair; our own creates and
		// updates must not trigger another round of GetCapacity calls.
		Handler: cache.ResourceEventHandlerFuncs{DeleteFunc: kick},
	}); err != nil {
		return nil, err
	}
	if _, err := d.Classes.Informer().AddEventHandler(hub.Handlers(hub.Latest(kick), kick)); err != nil {
		return nil, err
	}
	if d.CSINodes != nil {
		if _, err := d.CSINodes.Informer().AddEventHandler(hub.Handlers(hub.Latest(kick), kick)); err != nil {
			return nil, err
		}
	}
	if d.Nodes != nil {
		// Nodes change status all the time; only label changes move segments.
		if _, err := d.Nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: kick, DeleteFunc: kick,
			UpdateFunc: func(old, cur any) {
				o, ok1 := old.(*v1.Node)
				n, ok2 := cur.(*v1.Node)
				if ok1 && ok2 && !maps.Equal(o.Labels, n.Labels) {
					kick(cur)
				}
			},
		}); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *Publisher) managed(csc *storagev1.CSIStorageCapacity) bool {
	return csc.Namespace == p.namespace && csc.Labels[LabelDriverName] == p.d.Driver && csc.Labels[LabelManagedBy] == p.cfg.ManagedBy
}

// Refresh asks for GetCapacity again, as the sidecar does after each
// provision and delete (pkg/capacity/provision.go): the free space changed.
// A nil Publisher (no --enable-capacity) does nothing.
func (p *Publisher) Refresh() {
	if p != nil {
		p.queue.Add(capacityKey)
	}
}

// Run publishes until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	p.queue.Add(capacityKey)
	hub.RunWorkers(ctx, p.cfg.Controller, "CSIStorageCapacity", p.queue, 1, p.sync)
}

func itemKey(class string, segment map[string]string) string {
	parts := []string{class}
	for _, k := range slices.Sorted(maps.Keys(segment)) {
		parts = append(parts, k+"="+segment[k])
	}
	return strings.Join(parts, "|")
}

func objectKey(csc *storagev1.CSIStorageCapacity) string {
	var seg map[string]string
	if csc.NodeTopology != nil {
		seg = csc.NodeTopology.MatchLabels
	}
	return itemKey(csc.StorageClassName, seg)
}

// sync brings the objects in line with classes x segments, then polls again
// after --capacity-poll-interval. Unchanged capacity means no write.
func (p *Publisher) sync(ctx context.Context, _ string) error {
	segments, err := p.d.Segments()
	if err != nil {
		return err
	}
	classes, err := p.d.Classes.Lister().List(labels.Everything())
	if err != nil {
		return err
	}
	sort.Slice(classes, func(i, j int) bool { return classes[i].Name < classes[j].Name })
	existing, err := p.lister.CSIStorageCapacities(p.namespace).List(labels.SelectorFromSet(labels.Set{
		LabelDriverName: p.d.Driver, LabelManagedBy: p.cfg.ManagedBy}))
	if err != nil {
		return err
	}
	have := map[string]*storagev1.CSIStorageCapacity{}
	var obsolete []*storagev1.CSIStorageCapacity
	p.mu.Lock()
	for k, csc := range p.created {
		if _, err := p.lister.CSIStorageCapacities(p.namespace).Get(csc.Name); err == nil {
			delete(p.created, k) // the informer has it now
			continue
		}
		have[k] = csc
	}
	p.mu.Unlock()
	sort.Slice(existing, func(i, j int) bool { return existing[i].CreationTimestamp.Before(&existing[j].CreationTimestamp) })
	for _, csc := range existing {
		k := objectKey(csc)
		if _, dup := have[k]; dup {
			obsolete = append(obsolete, csc) // a duplicate: keep the oldest
			continue
		}
		have[k] = csc
	}

	var (
		errs  []error
		errMu sync.Mutex
		wg    sync.WaitGroup
	)
	want := map[string]bool{}
	// --capacity-threads GetCapacity calls at a time.
	slots := make(chan struct{}, max(1, p.cfg.Threads))
	for _, sc := range classes {
		if sc.Provisioner != p.d.Driver || (!waitsForFirstConsumer(sc) && !p.cfg.ForImmediateBinding) {
			continue
		}
		for _, seg := range segments {
			k := itemKey(sc.Name, seg)
			want[k] = true
			wg.Add(1)
			slots <- struct{}{}
			go func() {
				defer func() { <-slots; wg.Done() }()
				if err := p.publish(ctx, k, sc, seg, have[k]); err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	current := 0
	for k, csc := range have {
		if !want[k] {
			obsolete = append(obsolete, csc)
		} else {
			current++
		}
	}
	p.mu.Lock()
	for k := range p.created {
		if want[k] && have[k] == nil {
			current++
		}
	}
	p.mu.Unlock()
	p.metrics.set(len(want), current, len(obsolete))
	for _, csc := range obsolete {
		p.d.Steps.Trigger(ctx, fmt.Sprintf("CSIStorageCapacity %s describes a StorageClass or topology segment that is gone: deleting it", csc.Name))
		err := p.d.Writer.StorageV1().CSIStorageCapacities(csc.Namespace).Delete(ctx, csc.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
		p.mu.Lock()
		delete(p.created, objectKey(csc))
		p.mu.Unlock()
	}
	if len(errs) > 0 {
		return fmt.Errorf("publishing storage capacity: %v", errs)
	}
	return hub.RequeueAfter(p.cfg.PollInterval)
}

func (p *Publisher) publish(ctx context.Context, key string, sc *storagev1.StorageClass, seg map[string]string, current *storagev1.CSIStorageCapacity) error {
	req := &csi.GetCapacityRequest{
		Parameters: sc.Parameters, // as the sidecar sends them
		// Capacity is assumed independent of the capability, but the spec wants
		// a valid one (the sidecar sends an access mode of UNKNOWN).
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}},
	}
	if p.cfg.Topology {
		req.AccessibleTopology = &csi.Topology{Segments: seg}
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	resp, err := p.d.CSI.GetCapacity(cctx, req)
	if err != nil {
		return fmt.Errorf("GetCapacity for StorageClass %s segment %v: %w", sc.Name, seg, err)
	}
	avail := resource.NewQuantity(resp.GetAvailableCapacity(), resource.BinarySI)
	var maxSize *resource.Quantity
	if m := resp.GetMaximumVolumeSize(); m != nil {
		maxSize = resource.NewQuantity(m.GetValue(), resource.BinarySI)
	}
	if current == nil {
		csc := &storagev1.CSIStorageCapacity{
			ObjectMeta: metav1.ObjectMeta{
				GenerateName: "csisc-",
				Labels:       map[string]string{LabelDriverName: p.d.Driver, LabelManagedBy: p.cfg.ManagedBy},
			},
			StorageClassName:  sc.Name,
			NodeTopology:      &metav1.LabelSelector{MatchLabels: seg},
			Capacity:          avail,
			MaximumVolumeSize: maxSize,
		}
		if p.owner != nil {
			csc.OwnerReferences = []metav1.OwnerReference{*p.owner}
		}
		p.d.Steps.Trigger(ctx, fmt.Sprintf("publishing the free capacity of StorageClass %s in topology %v for the scheduler", sc.Name, seg))
		created, err := p.d.Writer.StorageV1().CSIStorageCapacities(p.namespace).Create(ctx, csc, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating CSIStorageCapacity for StorageClass %s segment %v: %w", sc.Name, seg, err)
		}
		p.mu.Lock()
		p.created[key] = created
		p.mu.Unlock()
		return nil
	}
	if sameQuantity(current.Capacity, avail) && sameQuantity(current.MaximumVolumeSize, maxSize) && (p.owner == nil || p.ownedByUs(current)) {
		return nil
	}
	upd := current.DeepCopy()
	upd.Capacity, upd.MaximumVolumeSize = avail, maxSize
	if p.owner != nil && !p.ownedByUs(upd) {
		upd.OwnerReferences = append(upd.OwnerReferences, *p.owner)
	}
	p.d.Steps.Trigger(ctx, fmt.Sprintf("free capacity of StorageClass %s in topology %v changed to %s", sc.Name, seg, avail.String()))
	updated, err := p.d.Writer.StorageV1().CSIStorageCapacities(upd.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("updating CSIStorageCapacity %s: %w", upd.Name, err)
	}
	p.mu.Lock()
	if _, pending := p.created[key]; pending {
		p.created[key] = updated
	}
	p.mu.Unlock()
	klog.FromContext(ctx).V(4).Info("Updated storage capacity", "object", klog.KObj(updated), "storageClass", sc.Name, "segment", seg, "capacity", avail.String())
	return nil
}

func (p *Publisher) ownedByUs(csc *storagev1.CSIStorageCapacity) bool {
	for _, o := range csc.OwnerReferences {
		if o.Controller != nil && *o.Controller && o.UID == p.owner.UID {
			return true
		}
	}
	return false
}

func sameQuantity(a, b *resource.Quantity) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Cmp(*b) == 0
}

func waitsForFirstConsumer(sc *storagev1.StorageClass) bool {
	return sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
}

// Writer is the client the publisher writes with (Deps.Writer).
func (p *Publisher) Writer() kubernetes.Interface { return p.d.Writer }
