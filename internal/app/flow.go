package app

import (
	"slices"

	"github.com/csi-hub/csi-hub/internal/flow"
	"github.com/csi-hub/csi-hub/internal/hub"
)

// observeFlow records the steps other components take (binding, attaching...)
// for /flow, on the informers the running controllers already watch: never a
// watch of its own.
func observeFlow(h *hub.Hub) error {
	names := h.Controllers()
	has := func(n ...string) bool {
		return slices.ContainsFunc(n, func(c string) bool { return slices.Contains(names, c) })
	}
	var inf flow.Informers
	core := h.Informers.Core().V1()
	if has("provisioner", "resizer") {
		inf.Claims = core.PersistentVolumeClaims().Informer()
	}
	if has("provisioner", "attacher", "resizer") {
		inf.Volumes = core.PersistentVolumes().Informer()
	}
	if has("attacher") {
		inf.Attachments = h.Informers.Storage().V1().VolumeAttachments().Informer()
	}
	if has("snapshotter") {
		api, err := h.Snapshots()
		if err != nil {
			return err
		}
		inf.Contents = api.Informers.Snapshot().V1().VolumeSnapshotContents().Informer()
	}
	return flow.Observe(h.Steps, h.Driver, inf)
}
