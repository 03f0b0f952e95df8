package provisioner

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// capacityMetrics are the sidecar's CSIStorageCapacity gauges
// (external-provisioner pkg/capacity: csistoragecapacities_desired_goal,
// _desired_current and _obsolete), as of the last sync.
type capacityMetrics struct {
	goal, current, obsolete prometheus.Gauge
}

var (
	capacityGaugesOnce sync.Once
	capacityGauges     *capacityMetrics
)

// registerCapacityMetrics returns the gauges, registered on the hub's registry
// (one set per process, as the sidecar has one capacity controller).
func registerCapacityMetrics(reg *prometheus.Registry) (*capacityMetrics, error) {
	capacityGaugesOnce.Do(func() {
		capacityGauges = &capacityMetrics{
			goal: prometheus.NewGauge(prometheus.GaugeOpts{Name: "csistoragecapacities_desired_goal",
				Help: "Number of CSIStorageCapacity objects that are supposed to be managed automatically."}),
			current: prometheus.NewGauge(prometheus.GaugeOpts{Name: "csistoragecapacities_desired_current",
				Help: "Number of CSIStorageCapacity objects that exist and are supposed to be managed automatically."}),
			obsolete: prometheus.NewGauge(prometheus.GaugeOpts{Name: "csistoragecapacities_obsolete",
				Help: "Number of CSIStorageCapacity objects that exist and will be deleted automatically."}),
		}
	})
	if reg != nil {
		for _, g := range []prometheus.Collector{capacityGauges.goal, capacityGauges.current, capacityGauges.obsolete} {
			if err := reg.Register(g); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
				return nil, err
			}
		}
	}
	return capacityGauges, nil
}

func (m *capacityMetrics) set(goal, current, obsolete int) {
	if m == nil {
		return
	}
	m.goal.Set(float64(goal))
	m.current.Set(float64(current))
	m.obsolete.Set(float64(obsolete))
}
