package healthmonitor

import (
	"context"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// notReadyFor is how long a node must stay NotReady before it counts as
// failed (external-health-monitor's DefaultNodeNotReadyTimeDuration).
const notReadyFor = 5 * time.Minute

const (
	reasonNodeFailed    = "NodeFailed"
	reasonNodeRecovered = "NodeRecovered"
)

// nodeWatcher is the sidecar's --enable-node-watcher (pkg/controller/
// node_watcher.go): a node that stays NotReady for 5 minutes, is Terminated
// or is deleted gets a Warning NodeFailed event on each claim of this driver
// that its Pods use; once it is Ready again, a (Warning, as upstream)
// NodeRecovered event. Pods come from the hub's slim Pod informer.
type nodeWatcher struct {
	c         *Controller
	nodes     corelisters.NodeLister
	nodesSync cache.InformerSynced
	pods      cache.SharedIndexInformer
	q         workqueue.TypedDelayingInterface[string]
	// notReadyFor is a field so tests need not wait 5 minutes.
	notReadyFor time.Duration

	mu          sync.Mutex
	firstBroken map[string]time.Time
	markedDown  map[string]bool
}

func newNodeWatcher(c *Controller) (*nodeWatcher, error) {
	pods, err := c.d.PodClaims()
	if err != nil {
		return nil, err
	}
	inf := c.d.Nodes
	w := &nodeWatcher{c: c, nodes: inf.Lister(), nodesSync: inf.Informer().HasSynced, pods: pods,
		q: workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[string]{Name: "health-monitor-nodes"}), notReadyFor: notReadyFor,
		firstBroken: map[string]time.Time{}, markedDown: map[string]bool{}}
	add := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			w.q.Add(key)
		}
	}
	_, err = inf.Informer().AddEventHandler(hub.Handlers(hub.Latest(add), add))
	return w, err
}

func (w *nodeWatcher) run(ctx context.Context) {
	go func() { <-ctx.Done(); w.q.ShutDown() }()
	if !cache.WaitForCacheSync(ctx.Done(), w.nodesSync, w.pods.HasSynced) {
		return
	}
	// Re-examine every node now and then: NotReady turns into failed by time
	// alone, with no update to the Node.
	go wait.UntilWithContext(ctx, func(context.Context) {
		nodes, _ := w.nodes.List(labels.Everything())
		for _, n := range nodes {
			w.q.Add(n.Name)
		}
	}, w.c.cfg.NodeListAddInterval)
	for {
		name, quit := w.q.Get()
		if quit {
			return
		}
		w.sync(ctx, name)
		w.q.Done(name)
	}
}

func (w *nodeWatcher) sync(ctx context.Context, name string) {
	node, err := w.nodes.Get(name)
	switch {
	case apierrors.IsNotFound(err):
		w.markFailed(ctx, name)
		w.forget(name)
		return
	case err != nil:
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ready(node) {
		delete(w.firstBroken, name)
		if w.markedDown[name] {
			w.forEachClaimOnNode(ctx, name, func(pvc *v1.PersistentVolumeClaim, _ []string) {
				w.c.recorder.Event(pvc, v1.EventTypeWarning, reasonNodeRecovered, "Node: "+name+" recovered")
			})
			delete(w.markedDown, name)
		}
		return
	}
	broken := node.Status.Phase == v1.NodeTerminated
	if !broken {
		first, seen := w.firstBroken[name]
		if !seen {
			w.firstBroken[name] = time.Now()
			// Look again once the grace period is over.
			w.q.AddAfter(name, w.notReadyFor+time.Second)
			return
		}
		broken = time.Since(first) > w.notReadyFor
	}
	if broken && !w.markedDown[name] {
		w.markFailedLocked(ctx, name)
		delete(w.firstBroken, name)
		w.markedDown[name] = true
	}
}

func (w *nodeWatcher) forget(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.firstBroken, name)
	delete(w.markedDown, name)
}

func (w *nodeWatcher) markFailed(ctx context.Context, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.markFailedLocked(ctx, name)
}

func (w *nodeWatcher) markFailedLocked(ctx context.Context, name string) {
	klog.FromContext(ctx).Info("Node failed: marking the claims its Pods use", "node", name)
	w.forEachClaimOnNode(ctx, name, func(pvc *v1.PersistentVolumeClaim, pods []string) {
		w.c.recorder.Event(pvc, v1.EventTypeWarning, reasonNodeFailed, "Pods: [ "+strings.Join(pods, " ")+" ] consuming PVC: "+
			pvc.Name+" in namespace: "+pvc.Namespace+" are now on a failed node: "+name)
	})
}

// forEachClaimOnNode calls f for each bound claim of this driver used by Pods
// on the node, with those Pods' names.
func (w *nodeWatcher) forEachClaimOnNode(ctx context.Context, node string, f func(*v1.PersistentVolumeClaim, []string)) {
	pvs, err := w.c.pvs.List(labels.Everything())
	if err != nil {
		return
	}
	for _, pv := range pvs {
		if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != w.c.d.Driver || pv.Status.Phase != v1.VolumeBound || pv.Spec.ClaimRef == nil {
			continue
		}
		ref := pv.Spec.ClaimRef
		objs, _ := w.pods.GetIndexer().ByIndex(hub.ClaimIndex, ref.Namespace+"/"+ref.Name)
		var names []string
		for _, o := range objs {
			if p, ok := o.(*hub.PodUse); ok && p.NodeName == node {
				names = append(names, p.Name)
			}
		}
		if len(names) == 0 {
			continue
		}
		pvc, err := w.c.pvcs.PersistentVolumeClaims(ref.Namespace).Get(ref.Name)
		if err != nil {
			klog.FromContext(ctx).V(4).Info("PVC of a bound PV not found", "PVC", klog.KRef(ref.Namespace, ref.Name))
			continue
		}
		f(pvc, names)
	}
}

func ready(node *v1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}
