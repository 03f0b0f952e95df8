package provisioner

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

func hasFinalizer(list []string, f string) bool { return slices.Contains(list, f) }

// finalizerTarget is one source object whose protection finalizer we manage.
type finalizerTarget struct {
	what      string // "PersistentVolumeClaim ns/name", for errors
	finalizer string
	// cached reads the informer's copy; nil (and no error) when it is gone.
	cached func() (metav1.Object, error)
	// get reads the object from the API server (after a conflict).
	get   func(ctx context.Context) (metav1.Object, error)
	patch func(ctx context.Context, data []byte) error
}

// set adds (want) or removes the finalizer. It starts from obj (usually the
// informer's copy, so the common case costs one write and no read) and
// guards the write with obj's resourceVersion, so a concurrent change (the
// snapshot-controller adds its own finalizer at the same moment) is never
// overwritten: on a conflict it re-reads the object and tries again.
func (f finalizerTarget) set(ctx context.Context, obj metav1.Object, want bool) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		list := obj.GetFinalizers()
		if hasFinalizer(list, f.finalizer) == want {
			return nil
		}
		if want {
			list = append(slices.Clone(list), f.finalizer)
		} else {
			list = slices.DeleteFunc(slices.Clone(list), func(s string) bool { return s == f.finalizer })
		}
		if list == nil {
			list = []string{}
		}
		data, _ := json.Marshal(map[string]any{"metadata": map[string]any{
			"finalizers": list, "resourceVersion": obj.GetResourceVersion()}})
		err := f.patch(ctx, data)
		if apierrors.IsConflict(err) {
			fresh, gerr := f.get(ctx)
			if gerr != nil {
				return gerr
			}
			obj = fresh
		}
		return err
	})
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err) && !want:
		return nil // gone: nothing left to protect
	case want:
		return fmt.Errorf("adding finalizer %s to %s: %w", f.finalizer, f.what, err)
	default:
		return fmt.Errorf("removing finalizer %s from %s: %w", f.finalizer, f.what, err)
	}
}

func (g *sourceGuard) claimTarget(ns, name string) finalizerTarget {
	claims := g.c.h.Kube.CoreV1().PersistentVolumeClaims(ns)
	return finalizerTarget{
		what:      "PersistentVolumeClaim " + ns + "/" + name,
		finalizer: finalizerCloneSource,
		cached: func() (metav1.Object, error) {
			claim, err := g.c.pvcLister.PersistentVolumeClaims(ns).Get(name)
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return claim, nil
		},
		get: func(ctx context.Context) (metav1.Object, error) {
			return claims.Get(ctx, name, metav1.GetOptions{})
		},
		patch: func(ctx context.Context, data []byte) error {
			_, err := claims.Patch(ctx, name, types.MergePatchType, data, metav1.PatchOptions{})
			return err
		},
	}
}

func (g *sourceGuard) snapshotTarget(ns, name string) finalizerTarget {
	snaps := g.snapshots.Client.SnapshotV1().VolumeSnapshots(ns)
	return finalizerTarget{
		what:      "VolumeSnapshot " + ns + "/" + name,
		finalizer: finalizerSnapshotSource,
		cached: func() (metav1.Object, error) {
			vs, err := g.snapshotLister.VolumeSnapshots(ns).Get(name)
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return vs, nil
		},
		get: func(ctx context.Context) (metav1.Object, error) {
			return snaps.Get(ctx, name, metav1.GetOptions{})
		},
		patch: func(ctx context.Context, data []byte) error {
			_, err := snaps.Patch(ctx, name, types.MergePatchType, data, metav1.PatchOptions{})
			return err
		},
	}
}
