package healthmonitor

import "github.com/csi-hub/csi-hub/internal/hub"

// hubDeps is internal/app's HealthMonitorDeps for the tests of this package,
// which cannot import internal/app (it imports this package).
func hubDeps(h *hub.Hub, cfg Config) Deps {
	return Deps{
		DriverConn: h.DriverConn(), Kube: h.Kube, Resync: h.Opts.Resync,
		PVs: h.Informers.Core().V1().PersistentVolumes(), PVCs: h.Informers.Core().V1().PersistentVolumeClaims(),
		Nodes: h.Informers.Core().V1().Nodes(), PodClaims: h.PodClaims,
		Events: h.Recorder("csi-pv-monitor-controller-" + h.Driver),
		Tuning: h.Opts.Tune(hub.Tuning{Workers: cfg.WorkerThreads, Timeout: cfg.Timeout}, Defaults),
	}
}
