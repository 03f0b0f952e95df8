package capacity

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// gauges are the sidecar's CSIStorageCapacity gauges
// (external-provisioner pkg/capacity: csistoragecapacities_desired_goal,
// _desired_current and _obsolete), as of the last sync.
type gauges struct {
	goal, current, obsolete prometheus.Gauge
}

var (
	gaugesOnce sync.Once
	theGauges  *gauges
)

// registerGauges returns the gauges, registered on the hub's registry
// (one set per process, as the sidecar has one capacity controller).
func registerGauges(reg *prometheus.Registry) (*gauges, error) {
	gaugesOnce.Do(func() {
		theGauges = &gauges{
			goal: prometheus.NewGauge(prometheus.GaugeOpts{Name: "csistoragecapacities_desired_goal",
				Help: "Number of CSIStorageCapacity objects that are supposed to be managed automatically."}),
			current: prometheus.NewGauge(prometheus.GaugeOpts{Name: "csistoragecapacities_desired_current",
				Help: "Number of CSIStorageCapacity objects that exist and are supposed to be managed automatically."}),
			obsolete: prometheus.NewGauge(prometheus.GaugeOpts{Name: "csistoragecapacities_obsolete",
				Help: "Number of CSIStorageCapacity objects that exist and will be deleted automatically."}),
		}
	})
	if reg != nil {
		for _, g := range []prometheus.Collector{theGauges.goal, theGauges.current, theGauges.obsolete} {
			if err := reg.Register(g); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
				return nil, err
			}
		}
	}
	return theGauges, nil
}

func (m *gauges) set(goal, current, obsolete int) {
	if m == nil {
		return
	}
	m.goal.Set(float64(goal))
	m.current.Set(float64(current))
	m.obsolete.Set(float64(obsolete))
}
