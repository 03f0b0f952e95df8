package resizer

import "github.com/csi-hub/csi-hub/internal/hub"

// hubDeps is internal/app's ResizerDeps for the tests of this package, which
// cannot import internal/app (it imports this package).
func hubDeps(h *hub.Hub, cfg Config) Deps {
	return Deps{
		DriverConn: h.DriverConn(), Kube: h.Kube,
		PVCs: h.Informers.Core().V1().PersistentVolumeClaims(), PVs: h.Informers.Core().V1().PersistentVolumes(),
		VACs: h.Informers.Storage().V1().VolumeAttributesClasses(), PodClaims: h.PodClaims,
		Events:     h.Recorder("external-resizer " + h.Driver),
		RetryStart: h.Opts.RetryIntervalStart, RetryMax: h.Opts.RetryIntervalMax,
		Work: hub.Work{Steps: h.Steps, NewQueue: h.NewQueue,
			Tuning: h.Opts.Tune(hub.Tuning{Workers: cfg.WorkerThreads, Timeout: cfg.Timeout}, Defaults)},
	}
}
