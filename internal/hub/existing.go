package hub

import (
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
)

// Existing turns a lister's NotFound into (nil, nil): for a sync, an object
// that is gone is done, not an error. Use as
//
//	pv, err := hub.Existing(c.pvLister.Get(name))
//	if pv == nil || err != nil {
//		return err
//	}
func Existing[T any](obj *T, err error) (*T, error) {
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// Object is an informer handler's obj as a T, unwrapping the tombstone
// (cache.DeletedFinalStateUnknown) a delete missed during a re-list arrives as.
func Object[T any](obj any) (T, bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	o, ok := obj.(T)
	return o, ok
}
