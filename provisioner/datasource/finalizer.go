package datasource

import (
	"context"
	"fmt"
	"slices"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/edit"
)

func hasFinalizer(list []string, f string) bool { return slices.Contains(list, f) }

// finalizerTarget is one source object whose protection finalizer we manage.
type finalizerTarget struct {
	what      string // "PersistentVolumeClaim ns/name", for errors
	finalizer string
	// cached reads the informer's copy; nil (and no error) when it is gone.
	cached func() (metav1.Object, error)
	// apply writes a metadata edit as internal/edit does for its kind: a
	// claim's never conflicts; a VolumeSnapshot's re-reads after a conflict,
	// so a finalizer the snapshot-controller adds at the same moment is kept.
	apply func(ctx context.Context, obj metav1.Object, m edit.Meta) error
}

// set adds (want) or removes the finalizer, starting from obj (usually the
// informer's copy, so the common case costs one write and no read).
func (f finalizerTarget) set(ctx context.Context, obj metav1.Object, want bool) error {
	m := edit.RemoveFinalizer(f.finalizer)
	if want {
		m = edit.AddFinalizer(f.finalizer)
	}
	err := f.apply(ctx, obj, m)
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

// target is the finalizerTarget of one object: get reads the informer's copy
// (only when needed: callers that pass the object need no lister), write
// applies a metadata edit (edit.BuiltIn or edit.Custom).
func target[T metav1.Object](what, finalizer string, get func() (T, error), write func(context.Context, T, edit.Meta) (T, error)) finalizerTarget {
	return finalizerTarget{what: what, finalizer: finalizer,
		cached: func() (metav1.Object, error) {
			obj, err := get()
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return obj, nil
		},
		apply: func(ctx context.Context, obj metav1.Object, m edit.Meta) error {
			_, err := write(ctx, obj.(T), m)
			return err
		},
	}
}

func (g *Guard) claimTarget(ns, name string) finalizerTarget {
	claims := g.d.Kube.CoreV1().PersistentVolumeClaims(ns)
	return target("PersistentVolumeClaim "+ns+"/"+name, FinalizerCloneSource,
		func() (*v1.PersistentVolumeClaim, error) { return g.pvcs.PersistentVolumeClaims(ns).Get(name) },
		func(ctx context.Context, c *v1.PersistentVolumeClaim, m edit.Meta) (*v1.PersistentVolumeClaim, error) {
			return edit.BuiltIn(ctx, claims, c, m)
		})
}

func (g *Guard) snapshotTarget(ns, name string) finalizerTarget {
	snaps := g.snapshots.Client.SnapshotV1().VolumeSnapshots(ns)
	return target("VolumeSnapshot "+ns+"/"+name, FinalizerSnapshotSource,
		func() (*snapv1.VolumeSnapshot, error) { return g.snapshotLister.VolumeSnapshots(ns).Get(name) },
		func(ctx context.Context, vs *snapv1.VolumeSnapshot, m edit.Meta) (*snapv1.VolumeSnapshot, error) {
			return edit.Custom(ctx, snaps, vs, m)
		})
}
