package app

import (
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-hub/csi-hub/attacher"
	"github.com/csi-hub/csi-hub/healthmonitor"
	"github.com/csi-hub/csi-hub/internal/cfgflag"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/provisioner"
	"github.com/csi-hub/csi-hub/resizer"
	"github.com/csi-hub/csi-hub/snapshotter"
)

// This file is the one place where controllers' dependencies are taken from
// the hub: each controller's New gets a struct of exactly what it uses, and no
// controller sees the hub itself. Integration tests outside the controller's
// own package build the same way through these functions.

// tune resolves a controller's own workers and timeout (hub.Options.Tune).
func tune(h *hub.Hub, own cfgflag.Tuning, def hub.Tuning) hub.Tuning {
	return h.Opts.Tune(hub.Tuning{Workers: own.WorkerThreads, Timeout: own.Timeout}, def)
}

// work is what a queue-driven controller runs its workers with.
func work(h *hub.Hub, own cfgflag.Tuning, def hub.Tuning) hub.Work {
	return hub.Work{Steps: h.Steps, NewQueue: h.NewQueue, Tuning: tune(h, own, def)}
}

// AttacherDeps is what the attacher uses of h.
func AttacherDeps(h *hub.Hub, cfg attacher.Config) (attacher.Deps, error) {
	byPV, err := h.AttachmentsByPV()
	if err != nil {
		return attacher.Deps{}, err
	}
	return attacher.Deps{
		DriverConn: h.DriverConn(),
		Kube:       h.Kube,
		VAs:        h.Informers.Storage().V1().VolumeAttachments(),
		PVs:        h.Informers.Core().V1().PersistentVolumes(),
		CSINodes:   h.Informers.Storage().V1().CSINodes(),
		VAsByPV:    byPV,
		Events:     h.Recorder("csi-attacher " + h.Driver), // external-attacher's event source
		Work:       work(h, cfg.Tuning, attacher.Defaults),
	}, nil
}

// ResizerDeps is what the resizer uses of h.
func ResizerDeps(h *hub.Hub, cfg resizer.Config) resizer.Deps {
	return resizer.Deps{
		DriverConn: h.DriverConn(),
		Kube:       h.Kube,
		PVCs:       h.Informers.Core().V1().PersistentVolumeClaims(),
		PVs:        h.Informers.Core().V1().PersistentVolumes(),
		VACs:       h.Informers.Storage().V1().VolumeAttributesClasses(),
		PodClaims:  h.PodClaims,
		Events:     h.Recorder("external-resizer " + h.Driver), // external-resizer's event source
		RetryStart: h.Opts.RetryIntervalStart,
		RetryMax:   h.Opts.RetryIntervalMax,
		Work:       work(h, cfg.Tuning, resizer.Defaults),
	}
}

// SnapshotterDeps is what the snapshotter uses of h. The driver must
// advertise CREATE_DELETE_SNAPSHOT.
func SnapshotterDeps(h *hub.Hub, cfg snapshotter.Config) (snapshotter.Deps, error) {
	caps := h.Conn.Caps
	if !caps.Has(csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT) {
		return snapshotter.Deps{}, fmt.Errorf("driver %s does not advertise the CREATE_DELETE_SNAPSHOT controller capability; the snapshotter cannot run", h.Driver)
	}
	api, err := h.Snapshots()
	if err != nil {
		return snapshotter.Deps{}, err
	}
	var groupCSI csi.GroupControllerClient
	if caps.Plugin[csi.PluginCapability_Service_GROUP_CONTROLLER_SERVICE] {
		groupCSI = csi.NewGroupControllerClient(h.Conn.ClientConn)
	}
	return snapshotter.Deps{
		DriverConn: h.DriverConn(),
		GroupCSI:   groupCSI,
		Kube:       h.Kube,
		Snapshots:  api,
		Events:     h.Recorder("csi-snapshotter " + h.Driver), // csi-snapshotter's event source
		RetryStart: h.Opts.RetryIntervalStart,
		RetryMax:   h.Opts.RetryIntervalMax,
		Work:       work(h, cfg.Tuning, snapshotter.Defaults),
	}, nil
}

// HealthMonitorDeps is what the health monitor uses of h.
func HealthMonitorDeps(h *hub.Hub, cfg healthmonitor.Config) healthmonitor.Deps {
	return healthmonitor.Deps{
		DriverConn: h.DriverConn(),
		Kube:       h.Kube,
		Resync:     h.Opts.Resync,
		PVs:        h.Informers.Core().V1().PersistentVolumes(),
		PVCs:       h.Informers.Core().V1().PersistentVolumeClaims(),
		Nodes:      h.Informers.Core().V1().Nodes(),
		PodClaims:  h.PodClaims,
		Events:     h.Recorder("csi-pv-monitor-controller-" + h.Driver), // external-health-monitor's event source
		Tuning:     tune(h, cfg.Tuning, healthmonitor.Defaults),
	}
}

// ProvisionerDeps is what the provisioner uses of h.
func ProvisionerDeps(h *hub.Hub, cfg provisioner.Config) provisioner.Deps {
	core, storage := h.Informers.Core().V1(), h.Informers.Storage().V1()
	return provisioner.Deps{
		DriverConn: h.DriverConn(),
		Kube:       h.Kube,
		RestConfig: h.RestConfig,
		Metrics:    h.Metrics,
		PVCs:       core.PersistentVolumeClaims(),
		PVs:        core.PersistentVolumes(),
		Classes:    storage.StorageClasses(),
		Nodes:      core.Nodes(),
		CSINodes:   storage.CSINodes(),
		Capacities: storage.CSIStorageCapacities(),
		VAsByPV:    h.AttachmentsByPV,
		Snapshots:  h.Snapshots,
		Recorder:   h.Recorder,
		RetryMax:   h.Opts.RetryIntervalMax,
		Work:       work(h, cfg.Tuning, provisioner.Defaults),
	}
}
