package cluster

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// TestAttachDetachWithFakeKubelet walks the attach/detach protocol that
// external-attacher tests rely on, with the test playing attacher and kubelet:
// kube-controller-manager creates a VolumeAttachment for a pod on a
// CreateNode node, and deletes it after the pod is gone only once
// SetVolumesInUse no longer lists the volume.
func TestAttachDetachWithFakeKubelet(t *testing.T) {
	c := Shared(t)
	ctx := context.Background()
	ns, err := c.CreateNamespace(ctx, "attach")
	if err != nil {
		t.Fatal(err)
	}
	node := ns + "-node"
	if _, err := c.CreateNode(ctx, node, map[string]string{"topology.test.csi-hub.io/zone": "a"}); err != nil {
		t.Fatal(err)
	}
	csiNode, err := c.CreateCSINode(ctx, node, testDriver, "id-"+node, []string{"topology.test.csi-hub.io/zone"})
	if err != nil {
		t.Fatal(err)
	}
	if len(csiNode.Spec.Drivers) != 1 || csiNode.Spec.Drivers[0].NodeID != "id-"+node {
		t.Fatalf("CSINode drivers = %+v", csiNode.Spec.Drivers)
	}
	// Re-registering the same driver replaces its entry rather than adding one.
	if csiNode, err = c.CreateCSINode(ctx, node, testDriver, "id2-"+node, []string{"topology.test.csi-hub.io/zone"}); err != nil {
		t.Fatalf("re-registering: %v", err)
	}
	if len(csiNode.Spec.Drivers) != 1 || csiNode.Spec.Drivers[0].NodeID != "id2-"+node {
		t.Fatalf("after re-registering, drivers = %+v", csiNode.Spec.Drivers)
	}

	sc, pvName, handle := ns+"-sc", ns+"-pv", ns+"-handle"
	if _, err := c.Client.StorageV1().StorageClasses().Create(ctx, storageClass(sc), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, csiPV(pvName, sc, handle), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc(ns, "data", sc, "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "app", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"},
			}}},
		},
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var va *storagev1.VolumeAttachment
	poll(t, 2*time.Minute, "kube-controller-manager to create a VolumeAttachment", func(ctx context.Context) (bool, error) {
		list, err := c.Client.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for i := range list.Items {
			if ptr.Deref(list.Items[i].Spec.Source.PersistentVolumeName, "") == pvName {
				va = &list.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	if va.Spec.Attacher != testDriver || va.Spec.NodeName != node {
		t.Fatalf("VolumeAttachment spec = %+v", va.Spec)
	}

	// Play external-attacher: report the volume attached.
	va.Status.Attached = true
	if _, err := c.Client.StorageV1().VolumeAttachments().UpdateStatus(ctx, va, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	volume := CSIVolumeName(testDriver, handle)
	poll(t, time.Minute, "node.status.volumesAttached to list "+string(volume), func(ctx context.Context) (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, a := range n.Status.VolumesAttached {
			if a.Name == volume {
				return true, nil
			}
		}
		return false, nil
	})

	// Play kubelet: the volume is mounted; then the pod goes away.
	if err := c.SetVolumesInUse(ctx, node, volume); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "app", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	// The controller's reconciler runs every 100ms; 3s without a detach shows it waits for the unmount.
	time.Sleep(3 * time.Second)
	if _, err := c.Client.StorageV1().VolumeAttachments().Get(ctx, va.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("VolumeAttachment gone while the volume is still in use: %v", err)
	}

	// Unmounted: now it detaches.
	if err := c.SetVolumesInUse(ctx, node); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "kube-controller-manager to delete the VolumeAttachment", func(ctx context.Context) (bool, error) {
		_, err := c.Client.StorageV1().VolumeAttachments().Get(ctx, va.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// TestFakeNodeStaysReady checks the Lease heartbeat keeps a kubelet-less node
// Ready and untainted past the node monitor grace period (shortened to 20s in
// this package's TestMain), while a node without heartbeat turns Unknown.
func TestFakeNodeStaysReady(t *testing.T) {
	c := Shared(t)
	ctx := context.Background()
	const alive, silent = "heartbeat-node", "silent-node"
	if _, err := c.CreateNode(ctx, alive, nil); err != nil {
		t.Fatal(err)
	}
	// The control: the same Node object and Ready status, but no Lease renewal.
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: silent}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := c.Client.CoreV1().Nodes().Get(ctx, silent, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Status.Conditions = []corev1.NodeCondition{readyCondition()}
		_, err = c.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Parallel()

	readyOf := func(name string) corev1.ConditionStatus {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status
			}
		}
		return ""
	}
	poll(t, 90*time.Second, "the node without heartbeat to turn Unknown", func(context.Context) (bool, error) {
		return readyOf(silent) == corev1.ConditionUnknown, nil
	})
	if got := readyOf(alive); got != corev1.ConditionTrue {
		t.Errorf("node %s Ready = %s, want True: the Lease heartbeat does not keep it alive", alive, got)
	}
	n, err := c.Client.CoreV1().Nodes().Get(ctx, alive, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, taint := range n.Spec.Taints {
		t.Errorf("node %s has taint %s:%s", alive, taint.Key, taint.Effect)
	}
}
