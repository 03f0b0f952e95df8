package provisioner

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
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
			c := &Controller{h: &hub.Hub{Kube: kube, Steps: steps.NewRecorder(10)}}
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
			var body struct {
				Metadata struct {
					Finalizers      []string `json:"finalizers"`
					ResourceVersion string   `json:"resourceVersion"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(patches[0].GetPatch(), &body); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(body.Metadata.Finalizers, tc.want) || body.Metadata.ResourceVersion != "7" {
				t.Errorf("patch %s, want finalizers %v guarded by resourceVersion 7", patches[0].GetPatch(), tc.want)
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
		got, err := c.deletionSecretRef(tc.pv)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// The cached PV is stale (another controller changed its finalizers): the
// conflict is resolved at once from a fresh read, keeping the other's edit.
func TestRemoveFinalizerRereadsOnConflict(t *testing.T) {
	stale := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv1", ResourceVersion: "7",
		Finalizers: []string{"kubernetes.io/pv-protection", "external-attacher/block-csi-hub-io", finalizerPV}}}
	fresh := stale.DeepCopy()
	fresh.ResourceVersion, fresh.Finalizers = "8", []string{"kubernetes.io/pv-protection", finalizerPV}
	kube := fake.NewClientset(fresh)
	conflicts := 0
	kube.PrependReactor("patch", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var p struct {
			Metadata struct{ ResourceVersion string } `json:"metadata"`
		}
		_ = json.Unmarshal(a.(k8stesting.PatchAction).GetPatch(), &p)
		if p.Metadata.ResourceVersion != fresh.ResourceVersion {
			conflicts++
			return true, nil, apierrors.NewConflict(v1.Resource("persistentvolumes"), "pv1", errors.New("stale"))
		}
		return false, nil, nil
	})
	c := &Controller{h: &hub.Hub{Kube: kube, Steps: steps.NewRecorder(10)}}
	if err := c.removeFinalizer(context.Background(), stale); err != nil {
		t.Fatalf("removeFinalizer: %v", err)
	}
	if conflicts != 1 {
		t.Errorf("%d conflicts, want exactly the one from the stale cache", conflicts)
	}
	got, err := kube.CoreV1().PersistentVolumes().Get(context.Background(), "pv1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"kubernetes.io/pv-protection"}; !reflect.DeepEqual(got.Finalizers, want) {
		t.Errorf("finalizers %v, want %v", got.Finalizers, want)
	}
}
