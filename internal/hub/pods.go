package hub

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// ClaimIndex indexes the hub's slim Pods by the "namespace/claim" keys they
// mount while not terminated.
const ClaimIndex = "csi-hub.io/claim"

// PodClaims returns the hub's Pod informer, slim and indexed by claim, set up
// on first use. Controllers that need to know which Pods use a claim (the
// resizer's in-use check, the health monitor's node watcher) share it; it is
// the process's one Pod watch. No Pod is held whole, which is what makes the
// sidecars that cache every Pod of a large cluster run out of memory: the
// Pods are slimmed as they are decoded (page by page on list, event by event
// on watch), not after a whole list of full Pods has been built, which is when
// an informer transform would run. Call before Run.
func (h *Hub) PodClaims() (cache.SharedIndexInformer, error) {
	inf := h.Informers.InformerFor(&v1.Pod{}, newSlimPodInformer)
	if _, ok := inf.GetIndexer().GetIndexers()[ClaimIndex]; ok {
		return inf, nil
	}
	if err := inf.AddIndexers(cache.Indexers{ClaimIndex: ClaimsOfPod}); err != nil {
		return nil, fmt.Errorf("pod informer claim index: %w", err)
	}
	return inf, nil
}

// podPageSize bounds how many full Pods are decoded at once while listing.
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
	return cache.NewSharedIndexInformerWithOptions(lw, &v1.Pod{}, cache.SharedIndexInformerOptions{
		ResyncPeriod: resync, Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
		ObjectDescription: "slim pods",
	})
}

// slimEvent slims a watched Pod. A bookmark passes as sent: its annotation
// (initial-events-end) ends a streaming list.
func slimEvent(ev watch.Event) (watch.Event, bool) {
	if pod, ok := ev.Object.(*v1.Pod); ok && ev.Type != watch.Bookmark {
		ev.Object = slimPod(pod)
	}
	return ev, true
}

// listSlimPods lists every Pod in pages and keeps only their slim copies.
func listSlimPods(ctx context.Context, client kubernetes.Interface, opts metav1.ListOptions) (*v1.PodList, error) {
	if opts.Limit == 0 || opts.Limit > podPageSize {
		opts.Limit = podPageSize
	}
	if opts.ResourceVersion == "0" {
		// RV 0 is served whole from the watch cache, ignoring the limit.
		opts.ResourceVersion, opts.ResourceVersionMatch = "", ""
	}
	out := &v1.PodList{}
	for {
		page, err := client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range page.Items {
			out.Items = append(out.Items, *slimPod(&page.Items[i]))
		}
		out.ResourceVersion = page.ResourceVersion
		if page.Continue == "" {
			return out, nil
		}
		opts.Continue, opts.ResourceVersion, opts.ResourceVersionMatch = page.Continue, "", ""
	}
}

// SlimPod returns what csi-hub keeps of a Pod: name, namespace, UID, phase,
// node and the claims it mounts, no more. A generic ephemeral volume is
// recorded by the name of its claim, <pod>-<volume>, so readers need no
// second rule. Anything but a Pod is returned as it is.
func SlimPod(obj any) (any, error) {
	if pod, ok := obj.(*v1.Pod); ok {
		return slimPod(pod), nil
	}
	return obj, nil
}

func slimPod(pod *v1.Pod) *v1.Pod {
	slim := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion},
		Spec:       v1.PodSpec{NodeName: pod.Spec.NodeName},
		Status:     v1.PodStatus{Phase: pod.Status.Phase},
	}
	for _, vol := range pod.Spec.Volumes {
		var claim string
		switch {
		case vol.PersistentVolumeClaim != nil:
			claim = vol.PersistentVolumeClaim.ClaimName
		case vol.Ephemeral != nil:
			claim = pod.Name + "-" + vol.Name
		default:
			continue
		}
		slim.Spec.Volumes = append(slim.Spec.Volumes, v1.Volume{Name: vol.Name,
			VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}})
	}
	return slim
}

// ClaimsOfPod is the claim index function: the claims of a Pod that may
// still run. A Succeeded or Failed Pod uses nothing (external-resizer's
// isPodTerminated).
func ClaimsOfPod(obj any) ([]string, error) {
	pod, ok := obj.(*v1.Pod)
	if !ok || pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		return nil, nil
	}
	var keys []string
	for _, vol := range pod.Spec.Volumes {
		if vol.PersistentVolumeClaim != nil {
			keys = append(keys, pod.Namespace+"/"+vol.PersistentVolumeClaim.ClaimName)
		}
	}
	return keys, nil
}
