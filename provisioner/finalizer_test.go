package provisioner

import (
	"context"
	"reflect"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/test/cluster"
)

func TestFixFinalizer(t *testing.T) {
	pv := func(policy v1.PersistentVolumeReclaimPolicy, phase v1.PersistentVolumePhase, finalizers ...string) *v1.PersistentVolume {
		p := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv1", ResourceVersion: "7", Finalizers: finalizers}}
		p.Spec.PersistentVolumeReclaimPolicy, p.Status.Phase = policy, phase
		return p
	}
	for _, tc := range []struct {
		name string
		pv   *v1.PersistentVolume
		want []string // finalizers patched in; nil: no write at all
	}{
		{"our PV as created: no write", pv(v1.PersistentVolumeReclaimDelete, v1.VolumeBound, finalizerPV), nil},
		{"older PV without finalizer gets it", pv(v1.PersistentVolumeReclaimDelete, v1.VolumeBound, "kubernetes.io/pv-protection"),
			[]string{"kubernetes.io/pv-protection", finalizerPV}},
		{"not yet bound: left alone", pv(v1.PersistentVolumeReclaimDelete, v1.VolumePending), nil},
		{"policy changed to Retain: finalizer removed", pv(v1.PersistentVolumeReclaimRetain, v1.VolumeBound, finalizerPV, "kubernetes.io/pv-protection"),
			[]string{"kubernetes.io/pv-protection"}},
		{"Retain without finalizer: no write", pv(v1.PersistentVolumeReclaimRetain, v1.VolumeReleased), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewClientset(tc.pv)
			c := &Controller{d: Deps{Kube: kube, Work: hub.Work{Steps: steps.NewRecorder(10)}}}
			if err := c.fixFinalizer(context.Background(), tc.pv); err != nil {
				t.Fatal(err)
			}
			var patches []k8stesting.PatchAction
			for _, a := range kube.Actions() {
				if p, ok := a.(k8stesting.PatchAction); ok {
					patches = append(patches, p)
				}
			}
			if tc.want == nil {
				if len(patches) != 0 {
					t.Fatalf("%d patches, want none", len(patches))
				}
				return
			}
			if len(patches) != 1 {
				t.Fatalf("%d patches, want 1", len(patches))
			}
			got, err := kube.CoreV1().PersistentVolumes().Get(context.Background(), tc.pv.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(slices.Sorted(slices.Values(got.Finalizers)), slices.Sorted(slices.Values(tc.want))) {
				t.Errorf("finalizers %v after patch %s, want %v", got.Finalizers, patches[0].GetPatch(), tc.want)
			}
		})
	}
}

func TestDeletionSecretRef(t *testing.T) {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	_ = idx.Add(&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "sc"}, Parameters: map[string]string{
		reservedPrefix + "provisioner-secret-name": "${pvc.name}-creds", reservedPrefix + "provisioner-secret-namespace": "${pvc.namespace}"}})
	c := &Controller{scLister: storagelisters.NewStorageClassLister(idx)}
	mk := func(ann map[string]string) *v1.PersistentVolume {
		return &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-1", Annotations: ann},
			Spec: v1.PersistentVolumeSpec{StorageClassName: "sc", ClaimRef: &v1.ObjectReference{Name: "data", Namespace: "ns1"}}}
	}
	for _, tc := range []struct {
		name string
		pv   *v1.PersistentVolume
		want *v1.SecretReference
	}{
		{"annotations win", mk(map[string]string{annDeletionSecretName: "a", annDeletionSecretNamespace: "b"}), &v1.SecretReference{Name: "a", Namespace: "b"}},
		{"empty annotations: no secret", mk(map[string]string{annDeletionSecretName: "", annDeletionSecretNamespace: ""}), nil},
		{"older PV: from the StorageClass", mk(nil), &v1.SecretReference{Name: "data-creds", Namespace: "ns1"}},
	} {
		got, err := c.deletionSecretRef(context.Background(), tc.pv)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// The cached PV is stale (the attacher removed its finalizer, so ours moved):
// the refused patch is resolved at once from a fresh read, keeping the
// other's edit. Against the real API server: its answer to a failed JSON
// patch test (422 Invalid) is what removeFinalizer must recognise.
func TestRemoveFinalizerRereadsStalePV(t *testing.T) {
	ctx := context.Background()
	kube := cluster.Shared(t).Client
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "stale-", Finalizers: []string{"example.com/other", "external-attacher/block-csi-hub-io", finalizerPV}},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: "stale.csi-hub.io", VolumeHandle: "h"}},
		},
	}
	stale, err := kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		patch := []byte(`{"metadata":{"finalizers":null}}`)
		_, _ = kube.CoreV1().PersistentVolumes().Patch(ctx, stale.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		_ = kube.CoreV1().PersistentVolumes().Delete(ctx, stale.Name, metav1.DeleteOptions{})
	})
	// The attacher's finalizer goes, so ours moves from index 2 to 1.
	detach := []byte(`[{"op":"test","path":"/metadata/finalizers/1","value":"external-attacher/block-csi-hub-io"},{"op":"remove","path":"/metadata/finalizers/1"}]`)
	if _, err := kube.CoreV1().PersistentVolumes().Patch(ctx, stale.Name, types.JSONPatchType, detach, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	c := &Controller{d: Deps{Kube: kube, Work: hub.Work{Steps: steps.NewRecorder(10)}}}
	if err := c.removeFinalizer(ctx, stale); err != nil {
		t.Fatalf("removeFinalizer with a stale PV: %v", err)
	}
	got, err := kube.CoreV1().PersistentVolumes().Get(ctx, stale.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// kube-controller-manager may have added kubernetes.io/pv-protection meanwhile.
	if slices.Contains(got.Finalizers, finalizerPV) || !slices.Contains(got.Finalizers, "example.com/other") {
		t.Errorf("finalizers %v, want ours gone and example.com/other kept", got.Finalizers)
	}
}
