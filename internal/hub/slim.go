package hub

import (
	"slices"
	"strings"
	"sync"
	"unique"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// Slim is the transform of the hub's shared informers: DropManagedFields,
// then, for the objects a cluster has by the thousand (PersistentVolumes,
// claims, VolumeAttachments), the maps and strings that most of them have
// alike are shared instead of held once per object: annotations such as
// provisioned-by or bind-completed, a capacity of "storage: 1Gi", the
// driver, class, namespace and finalizer names. Each such map costs some
// 300 bytes; a bound volume's three objects carry six. Cached objects are
// read-only (every controller deep-copies before it changes one), so sharing
// is invisible to them.
func Slim(obj any) (any, error) {
	obj, _ = DropManagedFields(obj)
	switch o := obj.(type) {
	case *v1.PersistentVolume:
		slimMeta(&o.Namespace, o.Finalizers, &o.Annotations, &o.Labels)
		o.Spec.Capacity = shared.resources(o.Spec.Capacity)
		o.Spec.StorageClassName = intern(o.Spec.StorageClassName)
		o.Spec.AccessModes = shared.accessModes(o.Spec.AccessModes)
		if r := o.Spec.ClaimRef; r != nil {
			r.Kind, r.APIVersion, r.Namespace = intern(r.Kind), intern(r.APIVersion), intern(r.Namespace)
		}
		if c := o.Spec.CSI; c != nil {
			c.Driver, c.FSType = intern(c.Driver), intern(c.FSType)
			c.VolumeAttributes = shared.strings(c.VolumeAttributes)
		}
	case *v1.PersistentVolumeClaim:
		slimMeta(&o.Namespace, o.Finalizers, &o.Annotations, &o.Labels)
		o.Spec.Resources.Requests = shared.resources(o.Spec.Resources.Requests)
		o.Spec.AccessModes = shared.accessModes(o.Spec.AccessModes)
		if o.Spec.StorageClassName != nil {
			*o.Spec.StorageClassName = intern(*o.Spec.StorageClassName)
		}
		o.Status.Capacity = shared.resources(o.Status.Capacity)
		o.Status.AccessModes = shared.accessModes(o.Status.AccessModes)
	case *storagev1.VolumeAttachment:
		slimMeta(&o.Namespace, o.Finalizers, &o.Annotations, &o.Labels)
		o.Spec.Attacher, o.Spec.NodeName = intern(o.Spec.Attacher), intern(o.Spec.NodeName)
	case *v1.Node:
		// A Node's status lists every image on it and every volume in use or
		// attached (often tens of KB); the controllers read its labels, spec
		// and conditions only. Status updates still arrive as events.
		o.Status.Images, o.Status.VolumesInUse, o.Status.VolumesAttached = nil, nil, nil
	}
	return obj, nil
}

func slimMeta(namespace *string, finalizers []string, annotations, labels *map[string]string) {
	*namespace = intern(*namespace)
	for i := range finalizers {
		finalizers[i] = intern(finalizers[i])
	}
	*annotations = shared.strings(*annotations)
	*labels = shared.strings(*labels)
}

// intern returns one copy of s for all equal strings, garbage-collected once
// no object holds it.
func intern(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}

// maxShared bounds the table of shared maps: maps that are not alike (an
// annotation with a per-object value) are never looked up again, and must
// not grow it for the life of the process. Past the bound, new maps are
// kept unshared.
const maxShared = 4096

// sharedMaps holds one instance of each map seen, by its contents.
type sharedMaps struct {
	mu   sync.Mutex
	maps map[string]any
}

var shared = &sharedMaps{maps: map[string]any{}}

func (s *sharedMaps) lookup(key string, m any) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.maps[key]; ok {
		return prev
	}
	if len(s.maps) < maxShared {
		s.maps[key] = m
	}
	return m
}

// sharedKeyLimit: maps whose contents are longer are left alone (they are
// unlikely to repeat and would make long keys).
const sharedKeyLimit = 512

func (s *sharedMaps) strings(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	keys := make([]string, 0, len(m))
	n := 0
	for k, v := range m {
		keys = append(keys, k)
		n += len(k) + len(v) + 2
	}
	if n > sharedKeyLimit {
		return m
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(n + 1)
	b.WriteByte('s')
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(m[k])
		b.WriteByte(0)
	}
	if got, ok := s.lookup(b.String(), m).(map[string]string); ok {
		return got
	}
	return m
}

func (s *sharedMaps) resources(r v1.ResourceList) v1.ResourceList {
	if len(r) == 0 || len(r) > 8 {
		return r
	}
	keys := make([]v1.ResourceName, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteByte('r')
	for _, k := range keys {
		q := r[k]
		b.WriteString(string(k))
		b.WriteByte(0)
		b.WriteString(q.String())
		b.WriteByte(0)
	}
	if got, ok := s.lookup(b.String(), r).(v1.ResourceList); ok {
		return got
	}
	return r
}

func (s *sharedMaps) accessModes(modes []v1.PersistentVolumeAccessMode) []v1.PersistentVolumeAccessMode {
	if len(modes) == 0 || len(modes) > 4 {
		return modes
	}
	var b strings.Builder
	b.WriteByte('a')
	for _, m := range modes {
		b.WriteString(string(m))
		b.WriteByte(0)
	}
	// Shared slices are full (len == cap): an append copies.
	if got, ok := s.lookup(b.String(), slices.Clip(modes)).([]v1.PersistentVolumeAccessMode); ok {
		return got
	}
	return modes
}
