package cluster

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

const testDriver = "test.csi-hub.io"

func TestMain(m *testing.M) {
	os.Exit(Main(m, Options{
		WithScheduler:          true,
		WithSnapshotController: true,
		// Short, so TestFakeNodeStaysReady sees an unrenewed node go Unknown
		// soon (the default is 50s); still above the 10s heartbeat interval.
		ControllerManagerFlags: []string{"--node-monitor-grace-period=20s"},
	}))
}

func TestStartupTime(t *testing.T) {
	c := Shared(t)
	// A figure, not an assertion on speed: the machines are shared.
	t.Logf("full cluster (etcd, apiserver, controller-manager, scheduler, snapshot CRDs+controller) started in %.1fs", c.Startup.Seconds())
	fmt.Printf("STARTUP full cluster: %.1fs\n", c.Startup.Seconds())
	if got := c.Components(); strings.Join(got, ",") != "etcd,kube-apiserver,kube-controller-manager,kube-scheduler,snapshot-controller" {
		t.Errorf("components = %v", got)
	}
	v, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != "v1.34.4" || v.Major != "1" || v.Minor != "34" {
		t.Errorf("server version = %+v, want v1.34.4 stamped by hack/ensure-k8s.sh", v)
	}
}

// csiPV returns a pre-provisioned CSI PV of 1Gi in storage class sc.
func csiPV(name, sc, handle string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              sc,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				CSI: &corev1.CSIPersistentVolumeSource{Driver: testDriver, VolumeHandle: handle, FSType: "ext4"},
			},
		},
	}
}

func pvc(ns, name, sc, size string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(sc),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
}

func storageClass(name string) *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: name},
		Provisioner:       testDriver,
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimRetain),
	}
}

// poll waits up to timeout for cond, failing t with what on timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// TestControllerManagerBindsAndAnnotates proves kube-controller-manager's PV
// binder runs: it binds a matching PV and PVC, and marks an unmatched PVC of a
// CSI StorageClass for external provisioning.
func TestControllerManagerBindsAndAnnotates(t *testing.T) {
	c := Shared(t)
	ctx := context.Background()
	ns, err := c.CreateNamespace(ctx, "bind")
	if err != nil {
		t.Fatal(err)
	}
	sc := ns + "-sc"
	if _, err := c.Client.StorageV1().StorageClasses().Create(ctx, storageClass(sc), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, csiPV(ns+"-pv", sc, ns+"-handle"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc(ns, "claim", sc, "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Bigger than any PV: only a provisioner could satisfy it.
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc(ns, "unmatched", sc, "5Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	poll(t, time.Minute, "PVC claim and its PV to be Bound", func(ctx context.Context) (bool, error) {
		claim, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "claim", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, ns+"-pv", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return claim.Status.Phase == corev1.ClaimBound && claim.Spec.VolumeName == pv.Name &&
			pv.Status.Phase == corev1.VolumeBound && pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.UID == claim.UID, nil
	})
	poll(t, time.Minute, "the unmatched PVC to be handed to the external provisioner", func(ctx context.Context) (bool, error) {
		claim, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "unmatched", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return claim.Annotations["volume.kubernetes.io/storage-provisioner"] == testDriver && claim.Status.Phase == corev1.ClaimPending, nil
	})
}

// TestVolumeAttributesClassServed checks storage.k8s.io/v1 VolumeAttributesClass
// (GA in 1.34) is served, so resizer tests can use ControllerModifyVolume.
func TestVolumeAttributesClassServed(t *testing.T) {
	c := Shared(t)
	ctx := context.Background()
	vac := &storagev1.VolumeAttributesClass{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "gold-"},
		DriverName: testDriver,
		Parameters: map[string]string{"iops": "1000"},
	}
	created, err := c.Client.StorageV1().VolumeAttributesClasses().Create(ctx, vac, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a storage.k8s.io/v1 VolumeAttributesClass: %v", err)
	}
	if created.Parameters["iops"] != "1000" {
		t.Errorf("parameters not stored: %v", created.Parameters)
	}
}

func TestLogTail(t *testing.T) {
	c := Shared(t)
	if got := c.LogTail("kube-apiserver", 5); !strings.Contains(got, "\n") || strings.HasPrefix(got, "(") {
		t.Errorf("LogTail(kube-apiserver) = %q, want several lines of log", got)
	}
	if got := strings.Count(c.LogTail("kube-apiserver", 3), "\n"); got != 2 {
		t.Errorf("LogTail(kube-apiserver, 3) has %d newlines, want 2", got)
	}
	if got := c.LogTail("no-such-component", 5); !strings.Contains(got, "no component") {
		t.Errorf("LogTail of an unknown component = %q", got)
	}
	if err := c.Check(); err != nil {
		t.Errorf("a component has died: %v", err)
	}
}

// TestControllerManagerHandsExpansionToResizer checks kcm's expand controller
// sees a grown PVC of a CSI volume and leaves it to the external resizer with
// an ExternalExpanding event. (It sets volume.kubernetes.io/storage-resizer
// only for migrated in-tree volumes, not for CSI PVs: a resizer must match
// pv.spec.csi.driver instead.)
func TestControllerManagerHandsExpansionToResizer(t *testing.T) {
	c := Shared(t)
	ctx := context.Background()
	ns, err := c.CreateNamespace(ctx, "expand")
	if err != nil {
		t.Fatal(err)
	}
	class := storageClass(ns + "-sc")
	class.AllowVolumeExpansion = ptr.To(true)
	if _, err := c.Client.StorageV1().StorageClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, csiPV(ns+"-pv", class.Name, ns+"-handle"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc(ns, "grow", class.Name, "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "the PVC to bind", func(ctx context.Context) (bool, error) {
		claim, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "grow", metav1.GetOptions{})
		return err == nil && claim.Status.Phase == corev1.ClaimBound, err
	})
	patch := []byte(`{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}`)
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "grow", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "an ExternalExpanding event on the grown PVC", func(ctx context.Context) (bool, error) {
		events, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=grow"})
		if err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.Reason == "ExternalExpanding" {
				t.Logf("event: %s", e.Message)
				return true, nil
			}
		}
		return false, nil
	})
}
