package hub

import (
	"errors"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
