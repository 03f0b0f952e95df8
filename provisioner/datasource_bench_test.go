package provisioner

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/provisioner/datasource"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// BenchmarkDataSources provisions b.N claims at once from one VolumeSnapshot
// (restore) or one PVC (clone), against the fake driver, the real API
// server and snapshot-controller, with the sidecar's default API budget
// (--kube-api-qps 5, burst 10). It reports claims bound per second and the
// hub's API writes per claim: the source's protection finalizer costs one
// write to add and one to remove per batch, not per claim. Run e.g.
//
//	go test -run '^$' -bench DataSources -benchtime 20x ./provisioner/
func BenchmarkDataSources(b *testing.B) {
	for _, kind := range []string{"restore", "clone"} {
		b.Run(kind, func(b *testing.B) {
			s := baseSourceEnv(b)
			sc := s.storageClass("bench", withPolicy(v1.PersistentVolumeReclaimDelete))
			s.createPVC("src", sc.Name, "1Mi")
			s.waitBound("src")
			source := fromClaim("src")
			if kind == "restore" {
				s.takeSnapshot("snap", "src", s.snapshotClass())
				source = fromSnapshot("snap")
			}
			time.Sleep(time.Second) // let the source's own writes settle
			before := s.hub.Steps.Writes()
			calls := s.drv.Calls("CreateVolume")

			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				s.createPVC(fmt.Sprintf("c%d", i), sc.Name, "1Mi", source)
			}
			s.eventually(10*time.Minute, "every claim to be Bound", func() (bool, error) {
				list, err := s.kube.CoreV1().PersistentVolumeClaims(s.ns).List(s.ctx, metav1.ListOptions{})
				if err != nil {
					return false, err
				}
				bound := 0
				for _, p := range list.Items {
					if p.Spec.DataSource != nil && p.Status.Phase == v1.ClaimBound {
						bound++
					}
				}
				return bound == b.N, nil
			})
			elapsed := time.Since(start)
			b.StopTimer()
			protected := datasource.FinalizerCloneSource
			list := func() []string { return s.claimFinalizers("src") }
			if kind == "restore" {
				protected, list = datasource.FinalizerSnapshotSource, func() []string { return s.snapshotFinalizers("snap") }
			}
			s.waitNoFinalizer("the source", protected, list)
			// Let the queued events (Provisioning, ProvisioningSucceeded) drain into the count.
			s.eventually(2*time.Minute, "events to be written", func() (bool, error) {
				w := s.hub.Steps.Writes()
				return w["create events"]+w["patch events"]-before["create events"]-before["patch events"] >= 2*b.N, nil
			})

			writes, byKind := 0, map[string]int{}
			for k, n := range s.hub.Steps.Writes() {
				if d := n - before[k]; d > 0 {
					writes += d
					byKind[k] = d
				}
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "bound/s")
			b.ReportMetric(float64(writes)/float64(b.N), "writes/claim")
			b.ReportMetric(float64(s.drv.Calls("CreateVolume")-calls)/float64(b.N), "CreateVolume/claim")
			b.Logf("%s: %d claims bound in %s; writes %v", kind, b.N, elapsed.Round(time.Millisecond), byKind)
		})
	}
}

// baseSourceEnv is newSourceEnv with the sidecar's default API budget.
func baseSourceEnv(b *testing.B) *sourceEnv {
	e := baseEnv(b, DefaultConfig())
	e.tuneHub = func(o *hub.Options) { o.KubeAPIQPS, o.KubeAPIBurst = 5, 10 }
	e.startFake(fakedriver.Options{})
	s := &sourceEnv{env: e}
	s.startHub()
	return s
}
