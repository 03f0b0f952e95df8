package hub

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// ClaimIndex indexes the hub's slim Pods by the "namespace/claim" keys they
// mount while not terminated.
const ClaimIndex = "csi-hub.io/claim"

// PodClaims returns the hub's Pod informer, set up on first use with the
// SlimPod transform and the claim index. Controllers that need to know which
// Pods use a claim (the resizer's in-use check, the health monitor's node
// watcher) share it; no Pod is held whole, which is what makes the sidecars
// that cache every Pod of a large cluster run out of memory. Call before Run.
func (h *Hub) PodClaims() (cache.SharedIndexInformer, error) {
	inf := h.Informers.Core().V1().Pods().Informer()
	if _, ok := inf.GetIndexer().GetIndexers()[ClaimIndex]; ok {
		return inf, nil
	}
	// The transform must be set before the informer starts; every user of
	// the hub's Pod informer then sees slim Pods.
	if err := inf.SetTransform(SlimPod); err != nil {
		return nil, fmt.Errorf("pod informer transform: %w", err)
	}
	if err := inf.AddIndexers(cache.Indexers{ClaimIndex: ClaimsOfPod}); err != nil {
		return nil, fmt.Errorf("pod informer claim index: %w", err)
	}
	return inf, nil
}

// SlimPod is the Pod informer's transform: name, namespace, UID, phase, node
// and the claims the Pod mounts, no more. A generic ephemeral volume is
// recorded by the name of its claim, <pod>-<volume>, so readers need no
// second rule.
func SlimPod(obj any) (any, error) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return obj, nil // tombstones carry an already transformed Pod
	}
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
	return slim, nil
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
