package snapshotter_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// BenchmarkSnapshotLifecycle creates b.N VolumeSnapshots at once, waits until
// all are readyToUse, then deletes them and waits until their contents are
// gone; it reports the wall time per snapshot of each phase and the hub's
// Kubernetes writes and CSI calls per snapshot. The snapshot-controller's own
// work is included in the times (it is part of what a user waits for).
//
//	go test ./snapshotter/ -run XXX -bench SnapshotLifecycle -benchtime 50x
func BenchmarkSnapshotLifecycle(b *testing.B) {
	e := newEnv(b, cluster.Shared(b), "bench", fakedriver.Options{})
	e.startHub(testConfig())
	e.sourcePVC("data")
	class := e.class("delete", snapv1.VolumeSnapshotContentDelete, nil)
	names := make([]string, b.N)
	for i := range names {
		names[i] = fmt.Sprintf("snap-%d", i)
	}
	e.driver.ResetCalls()
	writesBefore := total(e.hub.Steps.Writes())

	b.ResetTimer()
	began := time.Now()
	parallel(names, func(n string) {
		vs := &snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: n},
			Spec: snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To("data")},
				VolumeSnapshotClassName: ptr.To(class)},
		}
		if _, err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Create(e.ctx, vs, metav1.CreateOptions{}); err != nil {
			b.Error(err)
		}
	})
	contents := make([]string, len(names))
	for i, n := range names {
		_, c := e.waitReady(n, 5*time.Minute)
		contents[i] = c.Name
	}
	createPhase := time.Since(began)
	hubLatency := meanHubLatency(e, contents)
	createWrites := total(e.hub.Steps.Writes()) - writesBefore

	began = time.Now()
	parallel(names, func(n string) {
		if err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Delete(e.ctx, n, metav1.DeleteOptions{}); err != nil {
			b.Error(err)
		}
	})
	for _, c := range contents {
		e.waitContentGone(c, 5*time.Minute)
	}
	deletePhase := time.Since(began)
	b.StopTimer()
	deleteWrites := total(e.hub.Steps.Writes()) - writesBefore - createWrites

	n := float64(b.N)
	b.ReportMetric(float64(createPhase.Milliseconds())/n, "ms-to-ready/snapshot")
	b.ReportMetric(float64(deletePhase.Milliseconds())/n, "ms-to-gone/snapshot")
	b.ReportMetric(float64(createWrites)/n, "api-writes-create/snapshot")
	b.ReportMetric(float64(deleteWrites)/n, "api-writes-delete/snapshot")
	b.ReportMetric(float64(e.driver.Calls("CreateSnapshot"))/n, "CreateSnapshot/snapshot")
	b.ReportMetric(float64(hubLatency.Microseconds())/1000, "hub-ms-trigger-to-ready")
	if left := len(e.driver.Snapshots()); left != 0 {
		b.Errorf("%d backend snapshots left after deleting every VolumeSnapshot", left)
	}
}

// parallel runs f for every name, at most 10 at a time.
func parallel(names []string, f func(string)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	for _, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(n)
		}()
	}
	wg.Wait()
}

func total(m map[string]int) int {
	sum := 0
	for _, v := range m {
		sum += v
	}
	return sum
}

// meanHubLatency is the hub's own share of the create phase: from its first
// step on a content (the trigger) to the status write that made it ready.
func meanHubLatency(e *env, contents []string) time.Duration {
	first, ready := map[string]time.Time{}, map[string]time.Time{}
	for _, s := range e.hub.Steps.Recent(0) {
		obj := strings.TrimPrefix(s.Object, "VolumeSnapshotContent ")
		if _, ok := first[obj]; !ok && s.Kind == steps.Trigger {
			first[obj] = s.Time
		}
		if s.Kind == steps.Write && s.Action == "patch volumesnapshotcontents/status" {
			ready[obj] = s.Time.Add(s.Duration)
		}
	}
	var sum time.Duration
	for _, c := range contents {
		sum += ready[c].Sub(first[c])
	}
	return sum / time.Duration(len(contents))
}
