package capacity

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ownerOf finds the owner for CSIStorageCapacity objects as the sidecar does:
// start at the pod $POD_NAME and follow controller references level times
// (0: the pod, 1: its ReplicaSet/StatefulSet/DaemonSet, 2: a Deployment).
// The objects are then garbage-collected with the driver's deployment.
func ownerOf(ctx context.Context, kube kubernetes.Interface, ns, podName string, level int) (*metav1.OwnerReference, error) {
	if podName == "" {
		return nil, fmt.Errorf("POD_NAME is not set (use -1 for no owner)")
	}
	pod, err := kube.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	yes := true
	ref := metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID, Controller: &yes}
	var meta metav1.Object = pod
	for i := 1; i <= level; i++ {
		ctrl := metav1.GetControllerOfNoCopy(meta)
		if ctrl == nil {
			return nil, fmt.Errorf("%s %s/%s has no controlling owner (level %d)", ref.Kind, ns, ref.Name, i)
		}
		ref = *ctrl
		ref.Controller = &yes
		if i == level {
			break
		}
		apps := kube.AppsV1()
		var owner metav1.Object
		var err error
		get := metav1.GetOptions{}
		switch ctrl.Kind {
		case "ReplicaSet":
			owner, err = found(apps.ReplicaSets(ns).Get(ctx, ctrl.Name, get))
		case "StatefulSet":
			owner, err = found(apps.StatefulSets(ns).Get(ctx, ctrl.Name, get))
		case "DaemonSet":
			owner, err = found(apps.DaemonSets(ns).Get(ctx, ctrl.Name, get))
		case "Deployment":
			owner, err = found(apps.Deployments(ns).Get(ctx, ctrl.Name, get))
		default:
			return nil, fmt.Errorf("cannot follow owner %s %s beyond level %d", ctrl.Kind, ctrl.Name, i)
		}
		if err != nil {
			return nil, err
		}
		meta = owner
	}
	return &ref, nil
}

// found is a typed Get's answer as a metav1.Object (nil on error: a typed
// nil pointer would make a non-nil interface).
func found[T metav1.Object](obj T, err error) (metav1.Object, error) {
	if err != nil {
		return nil, err
	}
	return obj, nil
}
