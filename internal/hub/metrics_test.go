package hub

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kubernetes-csi/csi-lib-utils/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"
)

// /metrics serves csi-hub's registry, the CSI metrics manager's and
// component-base's legacy registry (process, Go, client-go workqueues) in one
// answer without duplicate families, which would make the handler fail.
func TestMetricsHandlerGathersAllRegistries(t *testing.T) {
	csiMetrics := metrics.NewCSIMetricsManagerWithOptions("d.example.com",
		metrics.WithProcessStartTime(false), metrics.WithSubsystem(metrics.SubsystemSidecar))
	own := prometheus.NewRegistry()
	own.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "csi_hub_test_total", Help: "test"}))
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "metrics-test-queue"})
	defer q.ShutDown()
	q.Add("x")

	rec := httptest.NewRecorder()
	MetricsHandler(csiMetrics.GetRegistry(), own).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != 200 {
		t.Fatalf("/metrics = %d:\n%.2000s", rec.Code, body)
	}
	for _, want := range []string{
		"csi_hub_test_total",
		"process_start_time_seconds",
		"go_goroutines",
		`workqueue_adds_total{name="metrics-test-queue"} 1`,
		`workqueue_depth{name="metrics-test-queue"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
