package provisioner

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// BenchmarkProvision provisions b.N PVCs at once through csi-hub against the
// fake driver and a real API server, with the sidecar's default API budget
// (--kube-api-qps 5, --kube-api-burst 10) shared by every request of the hub,
// events included. It reports the time per bound volume and the API writes
// and CreateVolume calls per volume, the figures to compare with the
// external-provisioner sidecar at the same QPS. Run with a fixed count, e.g.
//
//	go test -run '^$' -bench Provision -benchtime 50x ./provisioner/
func BenchmarkProvision(b *testing.B) {
	for _, qps := range []float64{5, 50} {
		b.Run(fmt.Sprintf("qps=%g", qps), func(b *testing.B) {
			e := baseEnv(b, DefaultConfig())
			e.tuneHub = func(o *hub.Options) { o.KubeAPIQPS, o.KubeAPIBurst = qps, int(2*qps) }
			e.startFake(fakedriver.Options{})
			e.startHub()
			sc := e.storageClass("bench")

			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				e.createPVC(fmt.Sprintf("v%d", i), sc.Name, "1Mi")
			}
			// Our part ends when every PV exists; binding is kube-controller-manager's
			// (one claim worker, its own API budget), reported separately.
			e.eventually(10*time.Minute, "a PV for every PVC", func() (bool, error) {
				list, err := e.kube.CoreV1().PersistentVolumes().List(e.ctx, metav1.ListOptions{})
				if err != nil {
					return false, err
				}
				n := 0
				for _, pv := range list.Items {
					if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == e.ns {
						n++
					}
				}
				return n == b.N, nil
			})
			provisioned := time.Since(start)
			writesAtPV := e.hub.Steps.Writes()
			e.eventually(10*time.Minute, "all PVCs to be Bound", func() (bool, error) {
				list, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).List(e.ctx, metav1.ListOptions{})
				if err != nil {
					return false, err
				}
				bound := 0
				for _, p := range list.Items {
					if p.Status.Phase == v1.ClaimBound {
						bound++
					}
				}
				return bound == b.N, nil
			})
			elapsed := time.Since(start)
			b.StopTimer()
			// Let queued events drain so writes/volume counts them all.
			e.eventually(time.Minute, "events to be written", func() (bool, error) {
				w := e.hub.Steps.Writes()
				return w["create events"]+w["patch events"] >= 2*b.N, nil
			})

			writes := 0
			for _, n := range e.hub.Steps.Writes() {
				writes += n
			}
			b.ReportMetric(float64(b.N)/provisioned.Seconds(), "provisioned/s")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "bound/s")
			b.ReportMetric(float64(writes)/float64(b.N), "writes/volume")
			b.ReportMetric(float64(e.drv.Calls("CreateVolume"))/float64(b.N), "CreateVolume/volume")
			b.Logf("qps %g: %d PVs created in %s (writes then %v), all bound after %s; total writes %v",
				qps, b.N, provisioned.Round(time.Millisecond), writesAtPV, elapsed.Round(time.Millisecond), e.hub.Steps.Writes())
		})
	}
}
