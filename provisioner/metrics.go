package provisioner

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	libmetrics "sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller/metrics"

	"github.com/csi-hub/csi-hub/provisioner/datasource"
)

// stats are the sidecar's controller_persistentvolumeclaim_provision_* and
// controller_persistentvolume_delete_* metrics, from the library it is built
// on (sig-storage-lib-external-provisioner), counted as it counts them.
type stats struct{ m libmetrics.Metrics }

func newStats(reg *prometheus.Registry) (*stats, error) {
	s := &stats{m: libmetrics.New("controller")}
	if reg == nil {
		return s, nil
	}
	for _, c := range []prometheus.Collector{
		s.m.PersistentVolumeClaimProvisionTotal, s.m.PersistentVolumeClaimProvisionFailedTotal,
		s.m.PersistentVolumeClaimProvisionDurationSeconds, s.m.PersistentVolumeDeleteTotal,
		s.m.PersistentVolumeDeleteFailedTotal, s.m.PersistentVolumeDeleteDurationSeconds,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// provisioned records one provisioning attempt (labels: class, data source kind).
func (s *stats) provisioned(claim *v1.PersistentVolumeClaim, err error, start time.Time) {
	if s == nil {
		return
	}
	class, source := datasource.ClaimClass(claim), ""
	if claim.Spec.DataSource != nil {
		source = claim.Spec.DataSource.Kind
	}
	if err != nil {
		s.m.PersistentVolumeClaimProvisionFailedTotal.WithLabelValues(class, source).Inc()
		return
	}
	s.m.PersistentVolumeClaimProvisionDurationSeconds.WithLabelValues(class, source).Observe(time.Since(start).Seconds())
	s.m.PersistentVolumeClaimProvisionTotal.WithLabelValues(class, source).Inc()
}

// deleted records one deletion attempt; one postponed by a VolumeAttachment is
// not a failure.
func (s *stats) deleted(pv *v1.PersistentVolume, err error, start time.Time) {
	if s == nil {
		return
	}
	class := pv.Spec.StorageClassName
	switch {
	case errors.As(err, new(*volumeInUseError)):
	case err != nil:
		s.m.PersistentVolumeDeleteFailedTotal.WithLabelValues(class).Inc()
	default:
		s.m.PersistentVolumeDeleteDurationSeconds.WithLabelValues(class).Observe(time.Since(start).Seconds())
		s.m.PersistentVolumeDeleteTotal.WithLabelValues(class).Inc()
	}
}
