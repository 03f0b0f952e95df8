package attacher_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// benchVolumes creates n backend volumes with PVs (no claims: the benchmark
// plays kube-controller-manager and creates VolumeAttachments itself, so the
// figures are the attacher's, not the attach/detach controller's).
func benchVolumes(b *testing.B, e *env, prefix string, n int) []string {
	b.Helper()
	pvs := make([]string, n)
	for i := range n {
		handle := fmt.Sprintf("%s-%s-%d", e.ns, prefix, i)
		if _, err := e.driver.AddVolume(fakedriver.Volume{ID: handle, Name: handle, CapacityBytes: 1 << 30}); err != nil {
			b.Fatal(err)
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: handle},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
					Driver: e.name, VolumeHandle: handle, FSType: "ext4"}},
			},
		}
		if _, err := e.c.Client.CoreV1().PersistentVolumes().Create(e.ctx, pv, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		pvs[i] = handle
	}
	return pvs
}

// awaitVA watches the VolumeAttachment from resourceVersion rv until done
// holds (done(nil): deleted). A watch, not polling, so latencies are not
// rounded up to a poll interval. Watching from a known version also sidesteps
// "too large resource version" from watch caches of the test etcd (3.4, no
// progress notifications), which a watch from "now" can hit.
func (e *env) awaitVA(name, rv string, done func(va *storagev1.VolumeAttachment) bool) *storagev1.VolumeAttachment {
	e.t.Helper()
	w, err := e.c.Client.StorageV1().VolumeAttachments().Watch(e.ctx, metav1.ListOptions{
		FieldSelector: "metadata.name=" + name, ResourceVersion: rv,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	defer w.Stop()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				e.t.Fatalf("watch of VolumeAttachment %s ended", name)
			}
			switch ev.Type {
			case watch.Error:
				e.t.Fatalf("watch of VolumeAttachment %s: %v", name, ev.Object)
			case watch.Deleted:
				if done(nil) {
					return nil
				}
			default:
				if va, ok := ev.Object.(*storagev1.VolumeAttachment); ok && done(va) {
					return va
				}
			}
		case <-timeout:
			e.t.Fatalf("VolumeAttachment %s: no wanted change within a minute", name)
		}
	}
}

func (e *env) createVA(name, pv string) *storagev1.VolumeAttachment {
	e.t.Helper()
	va := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: storagev1.VolumeAttachmentSpec{
			Attacher: e.name, NodeName: e.node,
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To(pv)},
		},
	}
	created, err := e.c.Client.StorageV1().VolumeAttachments().Create(e.ctx, va, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return created
}

func (e *env) deleteVA(name string) {
	e.t.Helper()
	if err := e.c.Client.StorageV1().VolumeAttachments().Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func attached(va *storagev1.VolumeAttachment) bool { return va != nil && va.Status.Attached }

func gone(va *storagev1.VolumeAttachment) bool { return va == nil }

// BenchmarkAttachDetach: one VolumeAttachment at a time, created -> attached
// -> deleted -> gone, against the fake driver. Reports the two latencies and
// the API writes per attach+detach.
func BenchmarkAttachDetach(b *testing.B) {
	e := newEnv(b, "benchseq", fakedriver.Options{Attach: true})
	e.registerNode()
	e.startHub()
	pvs := benchVolumes(b, e, "v", b.N)
	var attach, detach time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("%s-va-%d", e.ns, i)
		began := time.Now()
		va := e.createVA(name, pvs[i])
		va = e.awaitVA(name, va.ResourceVersion, attached)
		attach += time.Since(began)
		began = time.Now()
		e.deleteVA(name)
		e.awaitVA(name, va.ResourceVersion, gone)
		detach += time.Since(began)
	}
	b.StopTimer()
	writes := 0
	for _, n := range e.hub.Steps.Writes() {
		writes += n
	}
	b.ReportMetric(float64(attach.Milliseconds())/float64(b.N), "ms-attach/op")
	b.ReportMetric(float64(detach.Milliseconds())/float64(b.N), "ms-detach/op")
	b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
}

// BenchmarkAttachBurst: 50 VolumeAttachments created at once (a node
// draining onto another); reports how long until all are attached and how
// many VolumeAttachments per second that is, with the default 10 workers and
// the test cluster's client limits.
func BenchmarkAttachBurst(b *testing.B) {
	const burst = 50
	e := newEnv(b, "benchburst", fakedriver.Options{Attach: true})
	e.registerNode()
	e.startHub()
	pvs := benchVolumes(b, e, "v", burst*b.N)
	var total time.Duration
	b.ResetTimer()
	for round := range b.N {
		names := make([]string, burst)
		rvs := make([]string, burst)
		began := time.Now()
		var wg sync.WaitGroup
		for i := range burst {
			names[i] = fmt.Sprintf("%s-va-%d-%d", e.ns, round, i)
			wg.Go(func() { rvs[i] = e.createVA(names[i], pvs[round*burst+i]).ResourceVersion })
		}
		wg.Wait()
		for i, name := range names {
			e.awaitVA(name, rvs[i], attached)
		}
		total += time.Since(began)
		b.StopTimer()
		for _, name := range names {
			e.deleteVA(name)
		}
		for _, name := range names {
			e.waitVAGone(name)
		}
		b.StartTimer()
	}
	b.StopTimer()
	perRound := total / time.Duration(b.N)
	b.ReportMetric(float64(perRound.Milliseconds()), "ms-all-attached/op")
	b.ReportMetric(burst/perRound.Seconds(), "attached/s")
}
