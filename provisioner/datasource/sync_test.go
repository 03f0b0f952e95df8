package datasource

import (
	"context"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
)

// claimsInFlight is the provisioner's side as the guard sees it.
type claimsInFlight struct {
	pending  []*v1.PersistentVolumeClaim
	retried  []string
	inFlight map[string]bool
}

func (f *claimsInFlight) IsPending(key string) bool                  { return f.inFlight[key] }
func (f *claimsInFlight) PendingClaims() []*v1.PersistentVolumeClaim { return f.pending }
func (f *claimsInFlight) Retry(key string)                           { f.retried = append(f.retried, key) }

func sourcePVC(finalizers ...string) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "src", Finalizers: finalizers},
		Spec: v1.PersistentVolumeClaimSpec{VolumeName: "pv-src"}, Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound}}
}

func cloneOf(name, source string, bound bool) *v1.PersistentVolumeClaim {
	c := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: v1.PersistentVolumeClaimSpec{DataSource: &v1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: source}}}
	if bound {
		c.Spec.VolumeName, c.Status.Phase = "pv-"+name, v1.ClaimBound
	}
	return c
}

// The guard's sync for a clone source: the cloning-protection finalizer goes
// once no claim is being provisioned from the source, and stays while one is
// (pending in the API, or deleted with its CreateVolume being finished).
func TestSyncCloneSource(t *testing.T) {
	for _, tc := range []struct {
		name        string
		objs        []runtime.Object
		finishing   []*v1.PersistentVolumeClaim
		key         string
		wantRemoved bool
		wantWrites  int
	}{
		{name: "no user left: finalizer removed", key: "PersistentVolumeClaim/ns/src",
			objs: []runtime.Object{sourcePVC("keep", FinalizerCloneSource), cloneOf("done", "src", true)}, wantRemoved: true, wantWrites: 1},
		{name: "a pending clone keeps it", key: "PersistentVolumeClaim/ns/src",
			objs: []runtime.Object{sourcePVC("keep", FinalizerCloneSource), cloneOf("waiting", "src", false)}},
		{name: "a deleted clone being finished keeps it", key: "PersistentVolumeClaim/ns/src",
			objs: []runtime.Object{sourcePVC("keep", FinalizerCloneSource)}, finishing: []*v1.PersistentVolumeClaim{cloneOf("gone", "src", false)}},
		{name: "a clone of another source does not", key: "PersistentVolumeClaim/ns/src",
			objs: []runtime.Object{sourcePVC("keep", FinalizerCloneSource), cloneOf("other", "elsewhere", false)}, wantRemoved: true, wantWrites: 1},
		{name: "no finalizer: no write", key: "PersistentVolumeClaim/ns/src", objs: []runtime.Object{sourcePVC("keep")}},
		{name: "source gone: nothing to do", key: "PersistentVolumeClaim/ns/src"},
		{name: "malformed key", key: "garbage", objs: []runtime.Object{sourcePVC("keep", FinalizerCloneSource)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.objs...)
			f := informers.NewSharedInformerFactory(client, 0)
			g := &Guard{d: Deps{Kube: client, Claims: &claimsInFlight{pending: tc.finishing}, Steps: steps.NewRecorder(10)},
				pvcs: f.Core().V1().PersistentVolumeClaims().Lister(), queue: (&hub.Hub{}).NewQueue("claims")}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			f.Start(ctx.Done())
			f.WaitForCacheSync(ctx.Done())
			client.ClearActions()
			if err := g.sync(ctx, tc.key); err != nil {
				t.Fatalf("sync: %v", err)
			}
			var writes int
			for _, a := range client.Actions() {
				if _, ok := a.(k8stesting.PatchAction); ok || a.GetVerb() == "update" {
					writes++
				}
			}
			if writes != tc.wantWrites {
				t.Errorf("%d writes, want %d: %v", writes, tc.wantWrites, client.Actions())
			}
			if src, err := client.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "src", metav1.GetOptions{}); err == nil {
				had := slices.Contains(sourcePVCFinalizers(tc.objs), FinalizerCloneSource)
				if has, want := slices.Contains(src.Finalizers, FinalizerCloneSource), had && !tc.wantRemoved; has != want {
					t.Errorf("finalizers %v: cloning protection present %v, want %v", src.Finalizers, has, want)
				}
				if !slices.Contains(src.Finalizers, "keep") {
					t.Errorf("finalizers %v: another owner's finalizer lost", src.Finalizers)
				}
			}
		})
	}
}

func sourcePVCFinalizers(objs []runtime.Object) []string {
	for _, o := range objs {
		if c, ok := o.(*v1.PersistentVolumeClaim); ok && c.Name == "src" {
			return c.Finalizers
		}
	}
	return nil
}
