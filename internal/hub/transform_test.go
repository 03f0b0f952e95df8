package hub

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func managed() []metav1.ManagedFieldsEntry {
	return []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:status":{"f:phase":{}}}`)}}
}

func attachment(name, pv string) *storagev1.VolumeAttachment {
	va := &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: name, ManagedFields: managed()},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: "d", NodeName: "n"}}
	if pv != "" {
		va.Spec.Source.PersistentVolumeName = &pv
	}
	return va
}

// startFactory starts the hub's informers over a fake clientset holding objs.
func startFactory(t *testing.T, h *Hub) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() { cancel(); h.Informers.Shutdown() })
	h.Informers.Start(ctx.Done())
	for typ, ok := range h.Informers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("%v did not sync", typ)
		}
	}
}

// Every object the hub's informers hold has lost its managedFields (the
// largest part of most objects' metadata, read by no controller); the rest
// of the metadata stays.
func TestInformerFactoryDropsManagedFields(t *testing.T) {
	pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-1", ManagedFields: managed(),
		Annotations: map[string]string{"keep": "me"}}}
	pvc := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns", ManagedFields: managed()}}
	h := &Hub{Informers: NewInformerFactory(fake.NewClientset(pv, pvc, attachment("va-1", "pv-1")), 0)}
	pvs := h.Informers.Core().V1().PersistentVolumes()
	pvcs := h.Informers.Core().V1().PersistentVolumeClaims()
	vas := h.Informers.Storage().V1().VolumeAttachments()
	pvs.Informer() // registered before the factory starts
	pvcs.Informer()
	vas.Informer()
	startFactory(t, h)

	gotPV, err := pvs.Lister().Get("pv-1")
	if err != nil {
		t.Fatal(err)
	}
	if gotPV.ManagedFields != nil || gotPV.Annotations["keep"] != "me" {
		t.Errorf("cached PV: managedFields %v, annotations %v; want no managedFields, annotations kept", gotPV.ManagedFields, gotPV.Annotations)
	}
	if got, err := pvcs.Lister().PersistentVolumeClaims("ns").Get("c"); err != nil || got.ManagedFields != nil {
		t.Errorf("cached PVC: %v, managedFields %v", err, got.ManagedFields)
	}
	if got, err := vas.Lister().Get("va-1"); err != nil || got.ManagedFields != nil {
		t.Errorf("cached VolumeAttachment: %v, managedFields %v", err, got.ManagedFields)
	}
}

// The slim Pods (the factory's Pod informer) go through the same transform
// unchanged.
func TestDropManagedFieldsKeepsPodUse(t *testing.T) {
	p := &PodUse{Name: "p", Namespace: "ns", ClaimKeys: []string{"ns/c"}}
	got, err := DropManagedFields(p)
	if err != nil || got != any(p) || len(p.ClaimKeys) != 1 {
		t.Errorf("DropManagedFields(PodUse) = %v, %v", got, err)
	}
}

func TestDropManagedFieldsPassesTombstones(t *testing.T) {
	tomb := cache.DeletedFinalStateUnknown{Key: "x", Obj: attachment("x", "")}
	got, err := DropManagedFields(tomb)
	if err != nil || got != any(tomb) {
		t.Errorf("DropManagedFields(tombstone) = %v, %v; want it unchanged", got, err)
	}
}

// A PV's attachments are found through the index, whichever controllers ask
// for it (the provisioner and the attacher both do).
func TestAttachmentsByPV(t *testing.T) {
	// 3,000 more attachments of 1,500 other PVs: every bucket of the index
	// holds attachments of several PVs, which AttachmentsOf must tell apart.
	objs := []kruntime.Object{attachment("a-1", "pv-1"), attachment("a-2", "pv-1"), attachment("b-1", "pv-2"), attachment("inline", "")}
	for i := range 3000 {
		objs = append(objs, attachment(fmt.Sprintf("many-%d", i), fmt.Sprintf("many-pv-%d", i/2)))
	}
	h := &Hub{Informers: NewInformerFactory(fake.NewClientset(objs...), 0)}
	inf, err := h.AttachmentsByPV()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.AttachmentsByPV(); err != nil { // the second controller asking
		t.Fatalf("second AttachmentsByPV: %v", err)
	}
	startFactory(t, h)
	cases := map[string][]string{"pv-1": {"a-1", "a-2"}, "pv-2": {"b-1"}, "pv-3": nil}
	for i := range 1500 {
		cases[fmt.Sprintf("many-pv-%d", i)] = []string{fmt.Sprintf("many-%d", 2*i), fmt.Sprintf("many-%d", 2*i+1)}
		slices.Sort(cases[fmt.Sprintf("many-pv-%d", i)])
	}
	for pv, want := range cases {
		vas, err := AttachmentsOf(inf, pv)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, va := range vas {
			got = append(got, va.Name)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("AttachmentsOf(%s) = %v, want %v", pv, got, want)
		}
	}
	// Without the index there is no lookup (and no silent full scan).
	plain := NewInformerFactory(fake.NewClientset(), 0).Storage().V1().VolumeAttachments().Informer()
	if _, err := AttachmentsOf(plain, "pv-1"); err == nil {
		t.Error("AttachmentsOf on an informer without the PV index succeeded")
	}
}

func boundPV(name, handle string) *v1.PersistentVolume {
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, ManagedFields: managed(),
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": "d.example.com"},
			Finalizers:  []string{"kubernetes.io/pv-protection", "external-attacher/d-example-com"}},
		Spec: v1.PersistentVolumeSpec{
			Capacity:    v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}, StorageClassName: "fast",
			ClaimRef: &v1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "ns", Name: "c-" + name},
			PersistentVolumeSource: v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{
				Driver: "d.example.com", VolumeHandle: handle, FSType: "ext4",
				VolumeAttributes: map[string]string{"storage.kubernetes.io/csiProvisionerIdentity": "123-d.example.com"}}},
		},
	}
}

func sameMap[M ~map[K]V, K comparable, V any](a, b M) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// Volumes alike share their maps after Slim (one map, not one per PV), with
// nothing lost; a map unlike any other stays the object's own; a deep copy
// (what a controller changes) owns its maps again.
func TestSlimSharesWhatVolumesHaveAlike(t *testing.T) {
	a, b := boundPV("pv-a", "h-a"), boundPV("pv-b", "h-b")
	want := a.DeepCopy()
	want.ManagedFields = nil
	c := boundPV("pv-c", "h-c")
	c.Annotations = map[string]string{"only": "pv-c"}
	for _, pv := range []*v1.PersistentVolume{a, b, c} {
		if _, err := Slim(pv); err != nil {
			t.Fatal(err)
		}
	}
	if !equality.Semantic.DeepEqual(a, want) {
		t.Errorf("Slim changed the PV beyond managedFields:\n got %+v\nwant %+v", a, want)
	}
	if !sameMap(a.Annotations, b.Annotations) || !sameMap(a.Spec.Capacity, b.Spec.Capacity) ||
		!sameMap(a.Spec.CSI.VolumeAttributes, b.Spec.CSI.VolumeAttributes) {
		t.Error("two PVs alike do not share their annotations, capacity and volume attributes")
	}
	if sameMap(a.Annotations, c.Annotations) || c.Annotations["only"] != "pv-c" {
		t.Errorf("a PV's own annotations were replaced: %v", c.Annotations)
	}
	if a.Spec.CSI.VolumeHandle != "h-a" || b.Spec.CSI.VolumeHandle != "h-b" {
		t.Error("volume handles mixed up")
	}
	cp := a.DeepCopy()
	cp.Annotations["new"] = "x"
	if _, ok := b.Annotations["new"]; ok {
		t.Error("changing a deep copy changed the shared map")
	}
	claim := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns",
		Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec: v1.PersistentVolumeClaimSpec{Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}}}}
	claim2 := claim.DeepCopy()
	claim2.Name = "c2"
	Slim(claim)
	Slim(claim2)
	if !sameMap(claim.Spec.Resources.Requests, a.Spec.Capacity) || !sameMap(claim.Annotations, claim2.Annotations) {
		t.Error("claims alike do not share requests and annotations")
	}
}

// Once the caches are synced, the garbage of the initial lists is collected
// and returned to the OS (before the controllers start, after the sync).
// TestRunControllersReleasesMemory: memory goes back to the OS once the
// caches are synced, and again once the queues have drained the first add
// event of every object, not before.
func TestRunControllersReleasesMemory(t *testing.T) {
	h := &Hub{Informers: NewInformerFactory(fake.NewClientset(boundPV("pv-1", "h")), 0)}
	pvs := h.Informers.Core().V1().PersistentVolumes()
	pvs.Informer()
	q := h.NewQueue("initial")
	q.Add("pv-1")
	defer func(f func(), d time.Duration) { releaseMemory, initialDrainPoll = f, d }(releaseMemory, initialDrainPoll)
	initialDrainPoll = 10 * time.Millisecond
	type call struct {
		synced bool
		queued int
	}
	calls := make(chan call, 4)
	releaseMemory = func() {
		_, err := pvs.Lister().Get("pv-1")
		calls <- call{synced: err == nil && h.synced.Load(), queued: h.queuedItems()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go h.runControllers(ctx)
	if c := <-calls; !c.synced {
		t.Fatal("first release before the caches were synced")
	}
	select {
	case c := <-calls:
		t.Fatalf("second release while %d keys were still queued", c.queued)
	case <-time.After(200 * time.Millisecond):
	}
	key, _ := q.Get()
	q.Done(key)
	select {
	case c := <-calls:
		if c.queued != 0 {
			t.Errorf("second release with %d keys queued", c.queued)
		}
	case <-ctx.Done():
		t.Fatal("no release after the queue drained")
	}
}

func TestSetGCPercentDefault(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	if got := SetGCPercentDefault(); got != DefaultGCPercent || debug.SetGCPercent(100) != DefaultGCPercent {
		t.Errorf("without GOGC: SetGCPercentDefault() = %d, want %d in effect", got, DefaultGCPercent)
	}
	t.Setenv("GOGC", "200")
	if got := SetGCPercentDefault(); got != -1 || debug.SetGCPercent(100) != 100 {
		t.Errorf("with GOGC=200 the runtime's setting must stay: got %d", got)
	}
}

// Heap profiling stays on only when pprof is served.
func TestSetMemProfiling(t *testing.T) {
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 512 * 1024
	SetMemProfiling(true)
	if runtime.MemProfileRate != 512*1024 {
		t.Errorf("--enable-pprof: MemProfileRate %d, want the runtime's 512 KiB", runtime.MemProfileRate)
	}
	SetMemProfiling(false)
	if runtime.MemProfileRate != 0 {
		t.Errorf("without --enable-pprof: MemProfileRate %d, want 0 (off)", runtime.MemProfileRate)
	}
}

// TestSlimNodeKeepsWhatControllersRead: the image and volume lists go, the
// labels, taints and conditions the provisioner and health monitor read stay.
func TestSlimNodeKeepsWhatControllersRead(t *testing.T) {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"topology.kubernetes.io/zone": "a"}, ManagedFields: managed()},
		Spec: v1.NodeSpec{Taints: []v1.Taint{{Key: "k", Effect: v1.TaintEffectNoSchedule}}},
		Status: v1.NodeStatus{
			Conditions:      []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
			Images:          []v1.ContainerImage{{Names: []string{"registry.k8s.io/pause:3.10"}, SizeBytes: 1 << 20}},
			VolumesInUse:    []v1.UniqueVolumeName{"kubernetes.io/csi/d^vol-1"},
			VolumesAttached: []v1.AttachedVolume{{Name: "kubernetes.io/csi/d^vol-1", DevicePath: "/dev/x"}},
		}}
	want := n.DeepCopy()
	want.ManagedFields = nil
	want.Status.Images, want.Status.VolumesInUse, want.Status.VolumesAttached = nil, nil, nil
	got, err := Slim(n)
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("Slim(node) = %+v, want %+v", got, want)
	}
	if len(want.Labels) != 1 || len(want.Spec.Taints) != 1 || len(want.Status.Conditions) != 1 {
		t.Fatal("the expected node lost what controllers read")
	}
}

// What the VolumeAttachment informer's indexes hold per attachment, as the hub
// makes it (no namespace index for a cluster-scoped kind, the PV index in
// buckets): live heap of 10,000 attachments in an indexer with the informer's
// indexes, less the same in one with none. Measured 2026-12-03: 59 B per
// attachment; about 340 B with client-go's namespace index and an index value
// per PV, as before.
func TestAttachmentIndexMemory(t *testing.T) {
	const n, maxPerVA = 10000, 100
	h := &Hub{Informers: NewInformerFactory(fake.NewClientset(), 0)}
	inf, err := h.AttachmentsByPV()
	if err != nil {
		t.Fatal(err)
	}
	indexers := inf.GetIndexer().GetIndexers()
	if _, ok := indexers[cache.NamespaceIndex]; ok {
		t.Errorf("the VolumeAttachment informer has a namespace index (a cluster-scoped kind: one set of every key)")
	}
	vas := make([]*storagev1.VolumeAttachment, n)
	for i := range vas {
		vas[i] = attachment(fmt.Sprintf("csi-%064d", i), fmt.Sprintf("pvc-0b1c2d3e-4f50-6172-8394-%012d", i))
	}
	heapOf := func(ix cache.Indexers) uint64 {
		before := heapAfterGC()
		store := cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, ix)
		for _, va := range vas {
			if err := store.Add(va); err != nil {
				t.Fatal(err)
			}
		}
		after := heapAfterGC()
		runtime.KeepAlive(store)
		return after.HeapAlloc - before.HeapAlloc
	}
	perVA := (float64(heapOf(indexers)) - float64(heapOf(cache.Indexers{}))) / n
	t.Logf("indexes of the VolumeAttachment informer: %.0f B per attachment at %d", perVA, n)
	if perVA > maxPerVA {
		t.Errorf("the VolumeAttachment informer's indexes hold %.0f B per attachment, want at most %d", perVA, maxPerVA)
	}
}

// PersistentVolumes, like VolumeAttachments, come without the namespace
// index; namespaced kinds keep it (their listers read it).
func TestClusterScopedInformersWithoutNamespaceIndex(t *testing.T) {
	f := NewInformerFactory(fake.NewClientset(), 0)
	for name, c := range map[string]struct {
		inf  cache.SharedIndexInformer
		want bool
	}{
		"PersistentVolumes":      {f.Core().V1().PersistentVolumes().Informer(), false},
		"VolumeAttachments":      {f.Storage().V1().VolumeAttachments().Informer(), false},
		"PersistentVolumeClaims": {f.Core().V1().PersistentVolumeClaims().Informer(), true},
	} {
		if _, got := c.inf.GetIndexer().GetIndexers()[cache.NamespaceIndex]; got != c.want {
			t.Errorf("%s informer: namespace index %v, want %v", name, got, c.want)
		}
	}
	// One informer per type, whichever accessor asks.
	if a, b := f.Core().V1().PersistentVolumes().Informer(), f.InformerFor(&v1.PersistentVolume{}, nil); a != b {
		t.Error("PersistentVolumes().Informer() and InformerFor(PersistentVolume) are two informers")
	}
}
