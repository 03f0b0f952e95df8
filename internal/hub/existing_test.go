package hub

import (
	"errors"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
)

func TestExisting(t *testing.T) {
	pv := &v1.PersistentVolume{}
	if got, err := Existing(pv, nil); got != pv || err != nil {
		t.Errorf("found: got %v, %v; want the object, nil", got, err)
	}
	gone := apierrors.NewNotFound(schema.GroupResource{Resource: "persistentvolumes"}, "pv1")
	if got, err := Existing[v1.PersistentVolume](nil, gone); got != nil || err != nil {
		t.Errorf("NotFound: got %v, %v; want nil, nil", got, err)
	}
	broken := errors.New("cache broken")
	if got, err := Existing(pv, broken); got != nil || !errors.Is(err, broken) {
		t.Errorf("other error: got %v, %v; want nil and the error", got, err)
	}
}

func TestObject(t *testing.T) {
	pv := &v1.PersistentVolume{}
	if got, ok := Object[*v1.PersistentVolume](pv); !ok || got != pv {
		t.Errorf("plain object: got %v, %v", got, ok)
	}
	if got, ok := Object[*v1.PersistentVolume](cache.DeletedFinalStateUnknown{Key: "pv1", Obj: pv}); !ok || got != pv {
		t.Errorf("tombstone: got %v, %v; want the object inside", got, ok)
	}
	if _, ok := Object[*v1.PersistentVolumeClaim](pv); ok {
		t.Error("a PV taken as a PVC")
	}
	if _, ok := Object[*v1.PersistentVolume](cache.DeletedFinalStateUnknown{Key: "x", Obj: "junk"}); ok {
		t.Error("a tombstone of something else taken as a PV")
	}
}
