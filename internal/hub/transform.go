package hub

import (
	"fmt"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// DropManagedFields is the transform of every informer of the hub: no
// controller reads managedFields, which are often the largest part of an
// object's metadata (one entry per field manager, each with its fields as
// JSON). Writes are unaffected: an update without managedFields keeps the
// stored ones, and patches are computed between two copies without them.
// Objects without metadata (a watch's tombstones) pass unchanged.
func DropManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil && m.GetManagedFields() != nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// NewInformerFactory is the hub's shared informer factory: every informer it
// makes (the slim Pod informer too) drops managedFields as objects arrive,
// and shares what volumes have alike (Slim).
func NewInformerFactory(client kubernetes.Interface, resync time.Duration) informers.SharedInformerFactory {
	return informers.NewSharedInformerFactoryWithOptions(client, resync, informers.WithTransform(Slim))
}

// PVIndex indexes the hub's VolumeAttachments by the name of the
// PersistentVolume they attach.
const PVIndex = "csi-hub.io/pv"

// AttachmentsByPV returns the hub's VolumeAttachment informer with PVIndex
// added (once, however many controllers ask). The provisioner (a volume is
// not deleted while attached) and the attacher (a PV keeps the attacher's
// finalizer while attached) look up a PV's attachments with it instead of
// scanning every attachment of the cluster per event. Call before Run.
func (h *Hub) AttachmentsByPV() (cache.SharedIndexInformer, error) {
	inf := h.Informers.Storage().V1().VolumeAttachments().Informer()
	if _, ok := inf.GetIndexer().GetIndexers()[PVIndex]; ok {
		return inf, nil
	}
	if err := inf.AddIndexers(cache.Indexers{PVIndex: pvOfAttachment}); err != nil {
		return nil, fmt.Errorf("VolumeAttachment informer PV index: %w", err)
	}
	return inf, nil
}

func pvOfAttachment(obj any) ([]string, error) {
	va, ok := obj.(*storagev1.VolumeAttachment)
	if !ok || va.Spec.Source.PersistentVolumeName == nil {
		return nil, nil
	}
	return []string{*va.Spec.Source.PersistentVolumeName}, nil
}

// AttachmentsOf returns the VolumeAttachments of PV pv from an informer
// returned by AttachmentsByPV. The objects are the cache's: do not modify.
func AttachmentsOf(inf cache.SharedIndexInformer, pv string) ([]*storagev1.VolumeAttachment, error) {
	objs, err := inf.GetIndexer().ByIndex(PVIndex, pv)
	if err != nil {
		return nil, err
	}
	vas := make([]*storagev1.VolumeAttachment, 0, len(objs))
	for _, o := range objs {
		if va, ok := o.(*storagev1.VolumeAttachment); ok {
			vas = append(vas, va)
		}
	}
	return vas, nil
}
