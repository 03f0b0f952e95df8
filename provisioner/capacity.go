package provisioner

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// Labels by which the sidecar (and csi-hub) finds its CSIStorageCapacity objects.
const (
	labelDriverName = "csi.storage.k8s.io/drivername"
	labelManagedBy  = "csi.storage.k8s.io/managed-by"
	managedByValue  = "external-provisioner"
	capacityKey     = "all"
)

// capacityPublisher maintains one CSIStorageCapacity object per StorageClass
// of the driver (WaitForFirstConsumer ones unless --capacity-for-immediate-binding)
// and topology segment, in the namespace of $NAMESPACE, with the sidecar's
// labels, so the scheduler can place pods where there is room and the sidecar
// can take the objects over (and back) unchanged.
type capacityPublisher struct {
	c         *Controller
	namespace string
	owner     *metav1.OwnerReference
	lister    storagelisters.CSIStorageCapacityLister
	queue     hub.Queue
	// kube writes CSIStorageCapacity objects with its own budget
	// (--kube-api-capacity-qps/-burst), as the sidecar's capacity client:
	// capacity updates neither wait for nor delay provisioning.
	kube    kubernetes.Interface
	metrics *capacityMetrics
	// managedBy is the objects' managed-by label: external-provisioner, or
	// external-provisioner-<node> with --node-deployment, as the sidecar.
	managedBy string

	mu      sync.Mutex
	created map[string]*storagev1.CSIStorageCapacity // item key -> object the informer may not have yet
}

func newCapacityPublisher(ctx context.Context, c *Controller) (*capacityPublisher, error) {
	d := c.d
	if !d.Caps.Has(csi.ControllerServiceCapability_RPC_GET_CAPACITY) {
		return nil, fmt.Errorf("--enable-capacity: driver %s does not report the GET_CAPACITY capability", d.Driver)
	}
	ns := os.Getenv("NAMESPACE")
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		return nil, fmt.Errorf("--enable-capacity: set NAMESPACE (the namespace for CSIStorageCapacity objects) in the environment")
	}
	p := &capacityPublisher{c: c, namespace: ns, queue: d.NewQueue("csistoragecapacity"), created: map[string]*storagev1.CSIStorageCapacity{},
		managedBy: managedByValue}
	if c.node != nil {
		p.managedBy = c.node.managedBy()
	}
	capCfg := rest.CopyConfig(d.RestConfig)
	capCfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(float32(c.cfg.KubeAPICapacityQPS), c.cfg.KubeAPICapacityBurst)
	kube, err := kubernetes.NewForConfig(capCfg)
	if err != nil {
		return nil, err
	}
	p.kube = kube
	if p.metrics, err = registerCapacityMetrics(d.Metrics); err != nil {
		return nil, err
	}
	if c.cfg.CapacityOwnerrefLevel >= 0 {
		owner, err := ownerOf(ctx, d.Kube, ns, os.Getenv("POD_NAME"), c.cfg.CapacityOwnerrefLevel)
		if err != nil {
			return nil, fmt.Errorf("--capacity-ownerref-level %d: %w", c.cfg.CapacityOwnerrefLevel, err)
		}
		p.owner = owner
	}
	capInformer := d.Capacities
	p.lister = capInformer.Lister()
	kick := func(any) { p.queue.Add(capacityKey) }
	if _, err := capInformer.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			csc, ok := obj.(*storagev1.CSIStorageCapacity)
			return ok && p.managed(csc)
		},
		// Only a removal by someone else needs repair; our own creates and
		// updates must not trigger another round of GetCapacity calls.
		Handler: cache.ResourceEventHandlerFuncs{DeleteFunc: kick},
	}); err != nil {
		return nil, err
	}
	if _, err := d.Classes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kick, UpdateFunc: func(_, o any) { kick(o) }, DeleteFunc: kick,
	}); err != nil {
		return nil, err
	}
	if c.topology && c.node == nil { // a node deployment has one fixed segment
		if _, err := d.CSINodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: kick, UpdateFunc: func(_, o any) { kick(o) }, DeleteFunc: kick,
		}); err != nil {
			return nil, err
		}
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

func (p *capacityPublisher) managed(csc *storagev1.CSIStorageCapacity) bool {
	return csc.Namespace == p.namespace && csc.Labels[labelDriverName] == p.c.d.Driver && csc.Labels[labelManagedBy] == p.managedBy
}

// refresh asks for GetCapacity again, as the sidecar does after each
// provision and delete (pkg/capacity/provision.go): the free space changed.
func (p *capacityPublisher) refresh() {
	if p != nil {
		p.queue.Add(capacityKey)
	}
}

func (p *capacityPublisher) run(ctx context.Context) {
	p.queue.Add(capacityKey)
	hub.RunWorkers(ctx, Name, "CSIStorageCapacity", p.queue, 1, p.sync)
}

// segments are the distinct topology segments of the nodes where the driver
// runs (their CSINode lists it); without topology one empty segment, which
// matches every node.
func (p *capacityPublisher) segments() ([]map[string]string, error) {
	if p.c.node != nil {
		return []map[string]string{p.c.node.segment}, nil // NodeGetInfo's, as the sidecar
	}
	if !p.c.topology {
		return []map[string]string{{}}, nil
	}
	csiNodes, err := p.c.csiNodeLister.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	seen := map[string]map[string]string{}
	for _, cn := range csiNodes {
		keys := topologyKeys(cn, p.c.d.Driver)
		if len(keys) == 0 {
			continue
		}
		node, err := p.c.nodeLister.Get(cn.Name)
		if err != nil {
			continue // node gone or not yet seen
		}
		t, ok := termFromLabels(node.Labels, keys)
		if !ok {
			continue
		}
		seg := make(map[string]string, len(t))
		for _, s := range t {
			seg[s.key] = s.value
		}
		seen[t.String()] = seg
	}
	out := make([]map[string]string, 0, len(seen))
	for _, k := range slices.Sorted(maps.Keys(seen)) {
		out = append(out, seen[k])
	}
	return out, nil
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
func (p *capacityPublisher) sync(ctx context.Context, _ string) error {
	segments, err := p.segments()
	if err != nil {
		return err
	}
	classes, err := p.c.scLister.List(labels.Everything())
	if err != nil {
		return err
	}
	sort.Slice(classes, func(i, j int) bool { return classes[i].Name < classes[j].Name })
	existing, err := p.lister.CSIStorageCapacities(p.namespace).List(labels.SelectorFromSet(labels.Set{
		labelDriverName: p.c.d.Driver, labelManagedBy: p.managedBy}))
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
	slots := make(chan struct{}, max(1, p.c.cfg.CapacityThreads))
	for _, sc := range classes {
		if sc.Provisioner != p.c.d.Driver || (!isWaitForFirstConsumer(sc) && !p.c.cfg.CapacityForImmediateBinding) {
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
		p.c.d.Steps.Trigger(ctx, fmt.Sprintf("CSIStorageCapacity %s describes a StorageClass or topology segment that is gone: deleting it", csc.Name))
		err := p.kube.StorageV1().CSIStorageCapacities(csc.Namespace).Delete(ctx, csc.Name, metav1.DeleteOptions{})
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
	return hub.RequeueAfter(p.c.cfg.CapacityPollInterval)
}

func (p *capacityPublisher) publish(ctx context.Context, key string, sc *storagev1.StorageClass, seg map[string]string, current *storagev1.CSIStorageCapacity) error {
	req := &csi.GetCapacityRequest{
		Parameters: sc.Parameters, // as the sidecar sends them
		// Capacity is assumed independent of the capability, but the spec wants
		// a valid one (the sidecar sends an access mode of UNKNOWN).
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}},
	}
	if p.c.topology {
		req.AccessibleTopology = &csi.Topology{Segments: seg}
	}
	cctx, cancel := context.WithTimeout(ctx, p.c.timeout)
	defer cancel()
	resp, err := p.c.d.CSI.GetCapacity(cctx, req)
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
				Labels:       map[string]string{labelDriverName: p.c.d.Driver, labelManagedBy: p.managedBy},
			},
			StorageClassName:  sc.Name,
			NodeTopology:      &metav1.LabelSelector{MatchLabels: seg},
			Capacity:          avail,
			MaximumVolumeSize: maxSize,
		}
		if p.owner != nil {
			csc.OwnerReferences = []metav1.OwnerReference{*p.owner}
		}
		p.c.d.Steps.Trigger(ctx, fmt.Sprintf("publishing the free capacity of StorageClass %s in topology %v for the scheduler", sc.Name, seg))
		created, err := p.kube.StorageV1().CSIStorageCapacities(p.namespace).Create(ctx, csc, metav1.CreateOptions{})
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
	p.c.d.Steps.Trigger(ctx, fmt.Sprintf("free capacity of StorageClass %s in topology %v changed to %s", sc.Name, seg, avail.String()))
	updated, err := p.kube.StorageV1().CSIStorageCapacities(upd.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
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

func (p *capacityPublisher) ownedByUs(csc *storagev1.CSIStorageCapacity) bool {
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
