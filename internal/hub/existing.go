package hub

import apierrors "k8s.io/apimachinery/pkg/api/errors"

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
