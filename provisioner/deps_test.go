package provisioner

import "github.com/csi-hub/csi-hub/internal/hub"

// hubDeps is internal/app's ProvisionerDeps for the tests of this package,
// which cannot import internal/app (it imports this package).
func hubDeps(h *hub.Hub, cfg Config) Deps {
	core, storage := h.Informers.Core().V1(), h.Informers.Storage().V1()
	return Deps{
		DriverConn: h.DriverConn(), Kube: h.Kube,
		RestConfig: h.RestConfig, Metrics: h.Metrics,
		PVCs: core.PersistentVolumeClaims(), PVs: core.PersistentVolumes(), Classes: storage.StorageClasses(),
		Nodes: core.Nodes(), CSINodes: storage.CSINodes(), Capacities: storage.CSIStorageCapacities(),
		VAsByPV: h.AttachmentsByPV, Snapshots: h.Snapshots, Recorder: h.Recorder, RetryMax: h.Opts.RetryIntervalMax,
		Work: hub.Work{Steps: h.Steps, NewQueue: h.NewQueue,
			Tuning: h.Opts.Tune(hub.Tuning{Workers: cfg.WorkerThreads, Timeout: cfg.Timeout}, Defaults)},
	}
}
