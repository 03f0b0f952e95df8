package steps

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

var writesDesc = prometheus.NewDesc("csi_hub_kubernetes_writes_total",
	"Mutating Kubernetes API requests made by csi-hub (events included, leader election excluded).",
	[]string{"verb", "resource"}, nil)

// Collector exports the write counts, so the API budget spent per volume can be
// read off /metrics.
func (r *Recorder) Collector() prometheus.Collector { return collector{r} }

type collector struct{ r *Recorder }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- writesDesc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for action, n := range c.r.Writes() {
		verb, resource, _ := strings.Cut(action, " ")
		ch <- prometheus.MustNewConstMetric(writesDesc, prometheus.CounterValue, float64(n), verb, resource)
	}
}
