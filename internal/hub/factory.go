package hub

import (
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/informers/internalinterfaces"
	storageinformers "k8s.io/client-go/informers/storage"
	storagev1informers "k8s.io/client-go/informers/storage/v1"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	storagev1listers "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
)

// NewInformerFactory is the hub's shared informer factory: every informer it
// makes (the slim Pod informer too) drops managedFields as objects arrive,
// and shares what volumes have alike (Slim). The two cluster-scoped kinds a
// cluster has by the thousand, PersistentVolumes and VolumeAttachments, are
// made without the namespace index client-go gives every informer: for a
// cluster-scoped object it is one set of every key under "" (about 0.4 MiB of
// live heap per 10,000 objects), and listers of cluster-scoped objects never
// read it.
func NewInformerFactory(client kubernetes.Interface, resync time.Duration) informers.SharedInformerFactory {
	return factory{informers.NewSharedInformerFactoryWithOptions(client, resync, informers.WithTransform(Slim))}
}

// noIndexes makes informers without indexes; controllers add the ones they
// read (AttachmentsByPV).
func noIndexes(f informers.SharedInformerFactory, newInformer func(kubernetes.Interface, internalinterfaces.InformerOptions) cache.SharedIndexInformer) internalinterfaces.NewInformerFunc {
	return func(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return newInformer(client, internalinterfaces.InformerOptions{ResyncPeriod: resync, Indexers: cache.Indexers{}, InformerName: f.InformerName()})
	}
}

// factory overrides the accessors of PersistentVolumes and VolumeAttachments;
// every other informer is client-go's own. Either way an informer is made once
// per type (InformerFor), whoever asks first.
type factory struct {
	informers.SharedInformerFactory
}

func (f factory) Core() coreinformers.Interface { return coreGroup{f.SharedInformerFactory.Core(), f} }
func (f factory) Storage() storageinformers.Interface {
	return storageGroup{f.SharedInformerFactory.Storage(), f}
}

type coreGroup struct {
	coreinformers.Interface
	f factory
}

func (g coreGroup) V1() corev1informers.Interface { return coreV1{g.Interface.V1(), g.f} }

type coreV1 struct {
	corev1informers.Interface
	f factory
}

func (v coreV1) PersistentVolumes() corev1informers.TypedPersistentVolumeInformer {
	return pvInformer{clusterScoped[*v1.PersistentVolume, corev1listers.PersistentVolumeLister]{
		v.f, &v1.PersistentVolume{}, corev1informers.NewPersistentVolumeInformerWithOptions, corev1listers.NewPersistentVolumeLister}}
}

type storageGroup struct {
	storageinformers.Interface
	f factory
}

func (g storageGroup) V1() storagev1informers.Interface { return storageV1{g.Interface.V1(), g.f} }

type storageV1 struct {
	storagev1informers.Interface
	f factory
}

func (v storageV1) VolumeAttachments() storagev1informers.TypedVolumeAttachmentInformer {
	return vaInformer{clusterScoped[*storagev1.VolumeAttachment, storagev1listers.VolumeAttachmentLister]{
		v.f, &storagev1.VolumeAttachment{}, storagev1informers.NewVolumeAttachmentInformerWithOptions, storagev1listers.NewVolumeAttachmentLister}}
}

// clusterScoped is the informer accessor of a cluster-scoped kind T made
// without indexes, L its lister.
type clusterScoped[T interface {
	runtime.Object
	cache.Object
}, L any] struct {
	f           factory
	obj         T
	newInformer func(kubernetes.Interface, internalinterfaces.InformerOptions) cache.SharedIndexInformer
	newLister   func(cache.Indexer) L
}

func (c clusterScoped[T, L]) Informer() cache.SharedIndexInformer {
	return c.f.InformerFor(c.obj, noIndexes(c.f, c.newInformer))
}

func (c clusterScoped[T, L]) typed() cache.TypedSharedIndexInformer[T] {
	return cache.NewTypedSharedIndexInformer[T](c.Informer())
}

func (c clusterScoped[T, L]) Lister() L { return c.newLister(c.Informer().GetIndexer()) }

// pvInformer and vaInformer only name TypedInformer's return type, which
// client-go declares per kind.
type pvInformer struct {
	clusterScoped[*v1.PersistentVolume, corev1listers.PersistentVolumeLister]
}

func (i pvInformer) TypedInformer() corev1informers.PersistentVolumeIndexInformer { return i.typed() }

type vaInformer struct {
	clusterScoped[*storagev1.VolumeAttachment, storagev1listers.VolumeAttachmentLister]
}

func (i vaInformer) TypedInformer() storagev1informers.VolumeAttachmentIndexInformer {
	return i.typed()
}
