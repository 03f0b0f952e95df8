package hub

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
	"unique"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// ClaimIndex indexes the hub's slim Pods by the "namespace/claim" keys they
// mount while not terminated.
const ClaimIndex = "csi-hub.io/claim"

// PodClaims returns the hub's Pod informer, slim and indexed by claim, set up
// on first use. Its objects are *PodUse, not *v1.Pod. Controllers that need
// to know which Pods use a claim (the resizer's in-use check, the health
// monitor's node watcher) share it; it is the process's one Pod watch. No Pod
// is held whole, which is what makes the sidecars that cache every Pod of a
// large cluster run out of memory: the Pods are reduced as they are decoded
// (page by page on list, event by event on watch), not after a whole list of
// full Pods has been built, which is when an informer transform would run.
// Call before Run.
func (h *Hub) PodClaims() (cache.SharedIndexInformer, error) {
	// Keyed by v1.Pod in the factory: it is the process's one Pod informer.
	inf := h.Informers.InformerFor(&v1.Pod{}, newSlimPodInformer)
	if _, ok := inf.GetIndexer().GetIndexers()[ClaimIndex]; ok {
		return inf, nil
	}
	if err := inf.AddIndexers(cache.Indexers{ClaimIndex: ClaimsOfPod}); err != nil {
		return nil, fmt.Errorf("pod informer claim index: %w", err)
	}
	return inf, nil
}

// PodUse is what csi-hub keeps of a Pod: its name, namespace and
// resourceVersion (the informer's bookkeeping), node, phase and the keys
// "<namespace>/<claim>" of the claims it mounts. A generic ephemeral volume
// is recorded by the name of its claim, <pod>-<volume>, so readers need no
// second rule. It is about 120 bytes where a v1.Pod struct alone is 1240 and
// each v1.Volume 256; it carries no ObjectMeta (232 bytes) but implements
// metav1.Object over its few fields, as the informer needs.
type PodUse struct {
	Name, Namespace, ResourceVersion string
	NodeName                         string
	Phase                            v1.PodPhase
	// ClaimKeys are "<namespace>/<claim>", the claim index's values.
	ClaimKeys []string
	// annotations are a watch bookmark's (initial-events-end); nil on a Pod.
	annotations map[string]string
}

// GetObjectKind implements runtime.Object.
func (p *PodUse) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (p *PodUse) DeepCopyObject() runtime.Object {
	out := *p
	out.ClaimKeys = slices.Clone(p.ClaimKeys)
	out.annotations = maps.Clone(p.annotations)
	return &out
}

var _ metav1.Object = &PodUse{}

// metav1.Object over the fields PodUse has; the rest read as empty and are
// not stored.

func (p *PodUse) GetNamespace() string                  { return p.Namespace }
func (p *PodUse) SetNamespace(ns string)                { p.Namespace = ns }
func (p *PodUse) GetName() string                       { return p.Name }
func (p *PodUse) SetName(name string)                   { p.Name = name }
func (p *PodUse) GetResourceVersion() string            { return p.ResourceVersion }
func (p *PodUse) SetResourceVersion(rv string)          { p.ResourceVersion = rv }
func (p *PodUse) GetAnnotations() map[string]string     { return p.annotations }
func (p *PodUse) SetAnnotations(a map[string]string)    { p.annotations = a }
func (p *PodUse) GetGenerateName() string               { return "" }
func (p *PodUse) SetGenerateName(string)                {}
func (p *PodUse) GetUID() types.UID                     { return "" }
func (p *PodUse) SetUID(types.UID)                      {}
func (p *PodUse) GetGeneration() int64                  { return 0 }
func (p *PodUse) SetGeneration(int64)                   {}
func (p *PodUse) GetSelfLink() string                   { return "" }
func (p *PodUse) SetSelfLink(string)                    {}
func (p *PodUse) GetCreationTimestamp() metav1.Time     { return metav1.Time{} }
func (p *PodUse) SetCreationTimestamp(metav1.Time)      {}
func (p *PodUse) GetDeletionTimestamp() *metav1.Time    { return nil }
func (p *PodUse) SetDeletionTimestamp(*metav1.Time)     {}
func (p *PodUse) GetDeletionGracePeriodSeconds() *int64 { return nil }
func (p *PodUse) SetDeletionGracePeriodSeconds(*int64)  {}
func (p *PodUse) GetLabels() map[string]string          { return nil }
func (p *PodUse) SetLabels(map[string]string)           {}
func (p *PodUse) GetFinalizers() []string               { return nil }
func (p *PodUse) SetFinalizers([]string)                {}
func (p *PodUse) GetOwnerReferences() []metav1.OwnerReference {
	return nil
}
func (p *PodUse) SetOwnerReferences([]metav1.OwnerReference)    {}
func (p *PodUse) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (p *PodUse) SetManagedFields([]metav1.ManagedFieldsEntry)  {}

// podUseList is what the informer's list returns.
type podUseList struct {
	metav1.TypeMeta
	metav1.ListMeta
	Items []*PodUse
}

func (l *podUseList) DeepCopyObject() runtime.Object {
	out := &podUseList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	for _, p := range l.Items {
		out.Items = append(out.Items, p.DeepCopyObject().(*PodUse))
	}
	return out
}

// podPageSize bounds how many full Pods are decoded at once while listing
// (when the API server cannot stream the initial list).
const podPageSize = 500

func newSlimPodInformer(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return listSlimPods(ctx, client, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			w, err := client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, opts)
			if err != nil {
				return nil, err
			}
			return watch.Filter(w, slimEvent), nil
		},
	}
	return cache.NewSharedIndexInformerWithOptions(lw, &PodUse{}, cache.SharedIndexInformerOptions{
		ResyncPeriod: resync, Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
		ObjectDescription: "slim pods",
	})
}

// slimEvent reduces a watched Pod to its PodUse. A bookmark keeps its
// resourceVersion and annotations (initial-events-end ends a streaming list).
func slimEvent(ev watch.Event) (watch.Event, bool) {
	pod, ok := ev.Object.(*v1.Pod)
	switch {
	case !ok:
	case ev.Type == watch.Bookmark:
		ev.Object = &PodUse{ResourceVersion: pod.ResourceVersion, annotations: pod.Annotations}
	default:
		ev.Object = podUse(pod)
	}
	return ev, true
}

// listSlimPods lists every Pod in pages and keeps only their PodUse.
func listSlimPods(ctx context.Context, client kubernetes.Interface, opts metav1.ListOptions) (*podUseList, error) {
	if opts.Limit == 0 || opts.Limit > podPageSize {
		opts.Limit = podPageSize
	}
	if opts.ResourceVersion == "0" {
		// RV 0 is served whole from the watch cache, ignoring the limit.
		opts.ResourceVersion, opts.ResourceVersionMatch = "", ""
	}
	out := &podUseList{}
	for {
		page, err := client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range page.Items {
			out.Items = append(out.Items, podUse(&page.Items[i]))
		}
		out.ResourceVersion = page.ResourceVersion
		if page.Continue == "" {
			return out, nil
		}
		opts.Continue, opts.ResourceVersion, opts.ResourceVersionMatch = page.Continue, "", ""
	}
}

// SlimPod returns the PodUse of a Pod; anything else is returned as it is.
func SlimPod(obj any) (any, error) {
	if pod, ok := obj.(*v1.Pod); ok {
		return podUse(pod), nil
	}
	return obj, nil
}

func podUse(pod *v1.Pod) *PodUse {
	// The many Pods of a namespace share one copy of its name.
	ns := unique.Make(pod.Namespace).Value()
	p := &PodUse{Name: pod.Name, Namespace: ns, ResourceVersion: pod.ResourceVersion,
		NodeName: pod.Spec.NodeName, Phase: pod.Status.Phase}
	n := 0
	for _, vol := range pod.Spec.Volumes {
		if vol.PersistentVolumeClaim != nil || vol.Ephemeral != nil {
			n++
		}
	}
	if n == 0 {
		return p
	}
	p.ClaimKeys = make([]string, 0, n)
	for _, vol := range pod.Spec.Volumes {
		switch {
		case vol.PersistentVolumeClaim != nil:
			p.ClaimKeys = append(p.ClaimKeys, ns+"/"+vol.PersistentVolumeClaim.ClaimName)
		case vol.Ephemeral != nil:
			p.ClaimKeys = append(p.ClaimKeys, ns+"/"+pod.Name+"-"+vol.Name)
		}
	}
	return p
}

// ClaimsOfPod is the claim index function: the claims of a Pod that may
// still run. A Succeeded or Failed Pod uses nothing (external-resizer's
// isPodTerminated). The returned slice is the PodUse's own: do not modify it.
func ClaimsOfPod(obj any) ([]string, error) {
	pod, ok := obj.(*PodUse)
	if !ok || pod.Phase == v1.PodSucceeded || pod.Phase == v1.PodFailed {
		return nil, nil
	}
	return pod.ClaimKeys, nil
}
