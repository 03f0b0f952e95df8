package resizer

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// BenchmarkExpandLatency measures, on the real control plane, the time from
// a user raising a PVC's request to the PVC reporting the new capacity
// (driver without node expansion), and the API writes it costs.
func BenchmarkExpandLatency(b *testing.B) {
	e := newEnv(b, fakedriver.Options{}, DefaultConfig())
	var total time.Duration
	writesBefore := sumWrites(e)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		name := fmt.Sprintf("bench-%d", i)
		pvc, _ := e.boundVolume(name, "1Gi")
		w, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Watch(e.ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: pvc.ResourceVersion})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		e.request(name, "2Gi")
		if err := waitCapacity(e.ctx, w, "2Gi"); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		w.Stop()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/expansion")
	b.ReportMetric(float64(sumWrites(e)-writesBefore)/float64(b.N), "writes/expansion")
}

func waitCapacity(ctx context.Context, w watch.Interface, size string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("watch closed")
			}
			if pvc, ok := ev.Object.(*v1.PersistentVolumeClaim); ok && quantityIs(pvc.Status.Capacity[v1.ResourceStorage], size) {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sumWrites counts the hub's mutating API requests except events.
func sumWrites(e *env) int {
	n := 0
	for action, c := range e.hub.Steps.Writes() {
		if action != "create events" && action != "patch events" {
			n += c
		}
	}
	return n
}
