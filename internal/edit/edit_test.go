package edit

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

func TestStrategicPatch(t *testing.T) {
	obj := &metav1.ObjectMeta{Finalizers: []string{"a", "f"}, Annotations: map[string]string{"k": "v"}}
	for name, tc := range map[string]struct {
		edit Meta
		want string
	}{
		"add present finalizer":   {AddFinalizer("f"), ""},
		"add new finalizer":       {AddFinalizer("g"), `{"metadata":{"finalizers":["g"]}}`},
		"remove finalizer":        {RemoveFinalizer("f"), `{"metadata":{"$deleteFromPrimitiveList/finalizers":["f"]}}`},
		"remove absent finalizer": {RemoveFinalizer("zz"), ""},
		"same annotation":         {SetAnnotation("k", "v"), ""},
		"new annotation value":    {SetAnnotation("k", "w"), `{"metadata":{"annotations":{"k":"w"}}}`},
		"remove annotation":       {RemoveAnnotation("k"), `{"metadata":{"annotations":{"k":null}}}`},
		"remove absent":           {RemoveAnnotation("x"), ""},
		"both, one to do":         {AddFinalizer("f").And(SetAnnotation("n", "id")), `{"metadata":{"annotations":{"n":"id"}}}`},
		"both, two to do":         {AddFinalizer("g").And(SetAnnotation("n", "id")), `{"metadata":{"annotations":{"n":"id"},"finalizers":["g"]}}`},
		"both, nothing to do":     {AddFinalizer("f").And(SetAnnotation("k", "v")), ""},
	} {
		if got := string(tc.edit.StrategicPatch(obj)); got != tc.want {
			t.Errorf("%s: patch %s, want %s", name, got, tc.want)
		}
	}
	if !slices.Equal(obj.Finalizers, []string{"a", "f"}) || obj.Annotations["k"] != "v" {
		t.Errorf("edits mutated the object: %v %v", obj.Finalizers, obj.Annotations)
	}
}

func TestMergePatch(t *testing.T) {
	obj := &metav1.ObjectMeta{ResourceVersion: "7", Finalizers: []string{"a", "f"}, Annotations: map[string]string{"k": "v"}}
	for name, tc := range map[string]struct {
		edit Meta
		want string
	}{
		"add":               {AddFinalizer("g"), `{"metadata":{"finalizers":["a","f","g"],"resourceVersion":"7"}}`},
		"add present":       {AddFinalizer("a"), ""},
		"remove":            {RemoveFinalizer("a"), `{"metadata":{"finalizers":["f"],"resourceVersion":"7"}}`},
		"remove annotation": {RemoveAnnotation("k"), `{"metadata":{"annotations":{"k":null},"resourceVersion":"7"}}`},
	} {
		if got := string(tc.edit.MergePatch(obj)); got != tc.want {
			t.Errorf("%s: patch %s, want %s", name, got, tc.want)
		}
	}
	// Removing the last finalizer writes [], not null (which a merge patch
	// would read as "delete the field", the same thing, but [] is explicit).
	last := &metav1.ObjectMeta{ResourceVersion: "1", Finalizers: []string{"f"}}
	if got, want := string(RemoveFinalizer("f").MergePatch(last)), `{"metadata":{"finalizers":[],"resourceVersion":"1"}}`; got != want {
		t.Errorf("last finalizer: %s, want %s", got, want)
	}
}

// rvObject is a custom resource whose merge patches are checked against its
// resourceVersion, as the API server does with a resourceVersion precondition.
type rvObject struct {
	obj     v1.PersistentVolumeClaim
	patches int
	gets    int
	gone    bool
}

var gr = schema.GroupResource{Resource: "things"}

func (f *rvObject) Get(context.Context, string, metav1.GetOptions) (*v1.PersistentVolumeClaim, error) {
	f.gets++
	if f.gone {
		return nil, apierrors.NewNotFound(gr, "x")
	}
	return f.obj.DeepCopy(), nil
}

func (f *rvObject) Patch(_ context.Context, _ string, pt types.PatchType, data []byte, _ metav1.PatchOptions, _ ...string) (*v1.PersistentVolumeClaim, error) {
	f.patches++
	if f.gone {
		return nil, apierrors.NewNotFound(gr, "x")
	}
	if pt != types.MergePatchType {
		return nil, errors.New("custom resources take merge patches only")
	}
	var p struct {
		Metadata struct {
			Finalizers      []string `json:"finalizers"`
			ResourceVersion string   `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, err
	}
	if p.Metadata.ResourceVersion != f.obj.ResourceVersion {
		return nil, apierrors.NewConflict(gr, "x", errors.New("the object has been modified"))
	}
	f.obj.Finalizers, f.obj.ResourceVersion = p.Metadata.Finalizers, f.obj.ResourceVersion+"'"
	return f.obj.DeepCopy(), nil
}

// An edit of a custom resource from a stale cached copy must neither fail
// nor drop the finalizer someone else added meanwhile: it re-reads and writes
// again.
func TestCustomKeepsConcurrentChanges(t *testing.T) {
	ctx := context.Background()
	f := &rvObject{obj: v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "x", ResourceVersion: "1", Finalizers: []string{"a"}}}}
	stale := f.obj.DeepCopy()
	f.obj.Finalizers, f.obj.ResourceVersion = []string{"a", "other/concurrent"}, "2"

	out, err := Custom(ctx, f, stale, AddFinalizer("mine"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "other/concurrent", "mine"}; !slices.Equal(f.obj.Finalizers, want) || !slices.Equal(out.Finalizers, want) {
		t.Errorf("finalizers %v (returned %v), want %v", f.obj.Finalizers, out.Finalizers, want)
	}
	if f.patches != 2 || f.gets != 1 {
		t.Errorf("%d patches, %d gets; want 2 (a conflict, then the write) and 1", f.patches, f.gets)
	}

	f.patches = 0
	if _, err := Custom(ctx, f, f.obj.DeepCopy(), AddFinalizer("mine")); err != nil || f.patches != 0 {
		t.Errorf("adding a present finalizer: err %v, %d patches; want none", err, f.patches)
	}
	if _, err := Custom(ctx, f, f.obj.DeepCopy(), RemoveFinalizer("mine")); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "other/concurrent"}; !slices.Equal(f.obj.Finalizers, want) {
		t.Errorf("after removal finalizers %v, want %v", f.obj.Finalizers, want)
	}

	f.gone = true
	if _, err := Custom(ctx, f, stale, RemoveFinalizer("a")); !apierrors.IsNotFound(err) {
		t.Errorf("edit of a deleted object: %v, want NotFound", err)
	}
}

// A built-in kind's edit from a stale copy keeps what others wrote, with one
// write and no read, on the real patch machinery of client-go's fake tracker.
func TestBuiltInKeepsConcurrentChanges(t *testing.T) {
	ctx := context.Background()
	stored := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv", Finalizers: []string{"a", "other/concurrent", "mine"},
		Annotations: map[string]string{"theirs": "1"}}}
	cs := fake.NewClientset(stored)
	stale := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv", Finalizers: []string{"a", "mine"}}}

	if _, err := BuiltIn(ctx, cs.CoreV1().PersistentVolumes(), stale, RemoveFinalizer("mine").And(SetAnnotation("ours", "2"))); err != nil {
		t.Fatal(err)
	}
	got, _ := cs.CoreV1().PersistentVolumes().Get(ctx, "pv", metav1.GetOptions{})
	if want := []string{"a", "other/concurrent"}; !slices.Equal(got.Finalizers, want) {
		t.Errorf("finalizers %v, want %v", got.Finalizers, want)
	}
	if got.Annotations["theirs"] != "1" || got.Annotations["ours"] != "2" {
		t.Errorf("annotations %v, want theirs and ours", got.Annotations)
	}
	if n := len(cs.Actions()); n != 2 { // the patch and the Get above
		t.Errorf("%d actions, want 1 patch (and the test's get)", n-1)
	}
	cs.ClearActions()
	if out, err := BuiltIn(ctx, cs.CoreV1().PersistentVolumes(), got, RemoveFinalizer("mine")); err != nil || out != got || len(cs.Actions()) != 0 {
		t.Errorf("nothing to do: err %v, %d actions, same object %v", err, len(cs.Actions()), out == got)
	}
}

// The scheduler's newer choice survives a removal computed from an old one.
func TestRemoveAnnotationIf(t *testing.T) {
	ctx := context.Background()
	const key = "volume.kubernetes.io/selected-node"
	claim := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c", Annotations: map[string]string{key: "node-2"}}}
	cs := fake.NewClientset(claim)
	claims := cs.CoreV1().PersistentVolumeClaims("ns")
	if err := RemoveAnnotationIf(ctx, claims, claim, key, "node-1"); err == nil {
		t.Error("removal of a value that changed meanwhile succeeded")
	}
	got, _ := claims.Get(ctx, "c", metav1.GetOptions{})
	if got.Annotations[key] != "node-2" {
		t.Fatalf("annotation %q, want node-2 kept", got.Annotations[key])
	}
	if err := RemoveAnnotationIf(ctx, claims, claim, key, "node-2"); err != nil {
		t.Fatal(err)
	}
	got, _ = claims.Get(ctx, "c", metav1.GetOptions{})
	if _, ok := got.Annotations[key]; ok {
		t.Errorf("annotation still there: %v", got.Annotations)
	}
}

func TestDiffWritesOnlyChanges(t *testing.T) {
	ctx := context.Background()
	claim := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c", ResourceVersion: "5"}}
	if data, err := StrategicDiff(claim, claim.DeepCopy(), v1.PersistentVolumeClaim{}, true); err != nil || data != nil {
		t.Errorf("equal objects: patch %s, %v; want none", data, err)
	}
	updated := claim.DeepCopy()
	updated.Status.Phase = v1.ClaimBound
	data, err := StrategicDiff(claim, updated, v1.PersistentVolumeClaim{}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"metadata":{"resourceVersion":"5"},"status":{"phase":"Bound"}}`; string(data) != want {
		t.Errorf("patch %s, want %s", data, want)
	}
	cs := fake.NewClientset(claim)
	if out, err := Diff(ctx, cs.CoreV1().PersistentVolumeClaims("ns"), claim, claim.DeepCopy(), v1.PersistentVolumeClaim{}, false); err != nil || out != claim || len(cs.Actions()) != 0 {
		t.Errorf("empty diff: err %v, %d actions", err, len(cs.Actions()))
	}
}

func TestStatusWritesNothingWithoutChanges(t *testing.T) {
	cs := fake.NewClientset()
	pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv"}}
	if out, err := Status(context.Background(), cs.CoreV1().PersistentVolumes(), pv, nil); err != nil || out != pv || len(cs.Actions()) != 0 {
		t.Errorf("no changes: err %v, %d actions", err, len(cs.Actions()))
	}
}
