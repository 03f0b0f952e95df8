package datasource

import (
	"context"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// claimTarget's writes keep what others wrote meanwhile (the cached copy is
// stale), write nothing when there is nothing to do, and treat a deleted
// source as released; on client-go's fake tracker, which applies the patches.
func TestSetClaimFinalizer(t *testing.T) {
	ctx := context.Background()
	stored := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "src", Finalizers: []string{"a", "other/concurrent"}}}
	cs := fake.NewClientset(stored)
	g := &Guard{d: Deps{Kube: cs}}
	stale := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "src", Finalizers: []string{"a"}}}
	finalizers := func() []string {
		got, err := cs.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "src", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return slices.Sorted(slices.Values(got.Finalizers)) // order carries no meaning
	}

	if err := g.claimTarget("ns", "src").set(ctx, stale, true); err != nil {
		t.Fatal(err)
	}
	if got, want := finalizers(), []string{"a", "other/concurrent", FinalizerCloneSource}; !slices.Equal(got, want) {
		t.Errorf("finalizers %v, want %v", got, want)
	}
	cs.ClearActions()
	present := stored.DeepCopy()
	present.Finalizers = []string{"a", FinalizerCloneSource}
	if err := g.claimTarget("ns", "src").set(ctx, present, true); err != nil || len(cs.Actions()) != 0 {
		t.Errorf("adding a present finalizer: err %v, %d writes; want none", err, len(cs.Actions()))
	}
	if err := g.claimTarget("ns", "src").set(ctx, present, false); err != nil {
		t.Fatal(err)
	}
	if got, want := finalizers(), []string{"a", "other/concurrent"}; !slices.Equal(got, want) {
		t.Errorf("after removal finalizers %v, want %v", got, want)
	}

	// Removing from a source that is gone is done; adding to one is an error
	// that names the object (it ends up in the claim's ProvisioningFailed event).
	if err := cs.CoreV1().PersistentVolumeClaims("ns").Delete(ctx, "src", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := g.claimTarget("ns", "src").set(ctx, present, false); err != nil {
		t.Errorf("removing from a deleted object: %v, want success", err)
	}
	err := g.claimTarget("ns", "src").set(ctx, stale, true)
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
