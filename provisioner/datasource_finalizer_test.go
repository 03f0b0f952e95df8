package provisioner

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

// fakeObject is an API object whose patches are checked against its
// resourceVersion, as the API server does with a resourceVersion precondition.
type fakeObject struct {
	obj     v1.PersistentVolumeClaim
	patches int
	gone    bool
}

func (f *fakeObject) target(finalizer string) finalizerTarget {
	gr := schema.GroupResource{Resource: "persistentvolumeclaims"}
	return finalizerTarget{what: "PersistentVolumeClaim ns/src", finalizer: finalizer,
		get: func(context.Context) (metav1.Object, error) {
			if f.gone {
				return nil, apierrors.NewNotFound(gr, "src")
			}
			return f.obj.DeepCopy(), nil
		},
		patch: func(_ context.Context, data []byte) error {
			f.patches++
			if f.gone {
				return apierrors.NewNotFound(gr, "src")
			}
			var p struct {
				Metadata struct {
					Finalizers      []string `json:"finalizers"`
					ResourceVersion string   `json:"resourceVersion"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(data, &p); err != nil {
				return err
			}
			if p.Metadata.ResourceVersion != f.obj.ResourceVersion {
				return apierrors.NewConflict(gr, "src", errors.New("the object has been modified"))
			}
			f.obj.Finalizers, f.obj.ResourceVersion = p.Metadata.Finalizers, f.obj.ResourceVersion+"'"
			return nil
		}}
}

// A finalizer write from a stale cached copy must neither fail nor drop the
// finalizer someone else added meanwhile (the snapshot-controller adds its
// own at the same moment): it re-reads and writes again.
func TestSetFinalizerKeepsConcurrentChanges(t *testing.T) {
	f := &fakeObject{obj: v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "1", Finalizers: []string{"a"}}}}
	stale := f.obj.DeepCopy()
	f.obj.Finalizers, f.obj.ResourceVersion = []string{"a", "other/concurrent"}, "2"

	if err := f.target(finalizerCloneSource).set(context.Background(), stale, true); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "other/concurrent", finalizerCloneSource}; !slices.Equal(f.obj.Finalizers, want) {
		t.Errorf("finalizers %v, want %v", f.obj.Finalizers, want)
	}
	if f.patches != 2 {
		t.Errorf("%d patches, want 2 (a conflict, then the write)", f.patches)
	}

	// Already there: no write at all.
	f.patches = 0
	if err := f.target(finalizerCloneSource).set(context.Background(), f.obj.DeepCopy(), true); err != nil || f.patches != 0 {
		t.Errorf("adding a present finalizer: err %v, %d patches; want none", err, f.patches)
	}

	if err := f.target(finalizerCloneSource).set(context.Background(), f.obj.DeepCopy(), false); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "other/concurrent"}; !slices.Equal(f.obj.Finalizers, want) {
		t.Errorf("after removal finalizers %v, want %v", f.obj.Finalizers, want)
	}
}

// Removing from an object that is gone is done; adding to one is an error
// that names the object (it ends up in the claim's ProvisioningFailed event).
func TestSetFinalizerOnDeletedObject(t *testing.T) {
	f := &fakeObject{obj: v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "1",
		Finalizers: []string{finalizerCloneSource}}}, gone: true}
	if err := f.target(finalizerCloneSource).set(context.Background(), f.obj.DeepCopy(), false); err != nil {
		t.Errorf("removing from a deleted object: %v, want success", err)
	}
	f.obj.Finalizers = nil
	err := f.target(finalizerCloneSource).set(context.Background(), f.obj.DeepCopy(), true)
	if err == nil || !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "PersistentVolumeClaim ns/src") {
		t.Errorf("adding to a deleted object: %v, want NotFound naming the object", err)
	}
}

// Sources in another namespace are refused (no ReferenceGrant support);
// dataSourceRef's namespace decides which source a claim uses.
func TestClaimSourceNamespace(t *testing.T) {
	claim := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"}}
	claim.Spec.DataSourceRef = &v1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "src", Namespace: ptr.To("other")}
	if kind, ns, name, ok := claimSource(claim); !ok || kind != KindPVC || ns != "other" || name != "src" {
		t.Errorf("claimSource = %v %q %q %v", kind, ns, name, ok)
	}
	if _, err := sourceNamespace(claim); err == nil || !strings.Contains(err.Error(), `spec.dataSourceRef.namespace "other"`) {
		t.Errorf("cross-namespace source: %v, want an error naming spec.dataSourceRef.namespace", err)
	}
	claim.Spec.DataSourceRef.Namespace = nil
	if ns, err := sourceNamespace(claim); err != nil || ns != "ns" {
		t.Errorf("same-namespace source: %q, %v", ns, err)
	}
	claim.Spec.DataSourceRef = &v1.TypedObjectReference{APIGroup: ptr.To("example.com"), Kind: "Populator", Name: "p"}
	if _, _, _, ok := claimSource(claim); ok {
		t.Errorf("a populator's source counted as the provisioner's")
	}
}
