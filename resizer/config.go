package resizer

import (
	"flag"
	"time"

	"github.com/csi-hub/csi-hub/internal/cfgflag"
	"github.com/csi-hub/csi-hub/internal/hub"
)

// Defaults are the sidecar's worker count and CSI call timeout (its --workers
// and --timeout), used when neither --resizer-worker-threads /
// --resizer-timeout nor the global flags are given (hub.Options.Tune).
var Defaults = hub.Tuning{Workers: 10, Timeout: 10 * time.Second}

// Config holds the resizer's own flags.
type Config struct {
	// Tuning: workers of each queue (expansion, modification); timeout of
	// each ControllerExpandVolume / ControllerModifyVolume call.
	cfgflag.Tuning
	// ExtraModifyMetadata adds csi.storage.k8s.io/pvc/name, pvc/namespace and
	// pv/name to the parameters of ControllerModifyVolume.
	ExtraModifyMetadata bool
	// AnnotateFsResize is external-resizer's AnnotateFsResize feature gate:
	// while a node expansion is pending, the PV carries the PVC's previous
	// capacity in volume.alpha.kubernetes.io/pre-resize-capacity, so a PVC
	// re-bound to it reports the size its filesystem really has.
	AnnotateFsResize bool
	// HandleVolumeInUseError is external-resizer's --handle-volume-inuse-error:
	// after ControllerExpandVolume answers FailedPrecondition, the claim is not
	// tried again while a Pod uses it (see inuse.go).
	HandleVolumeInUseError bool
}

// DefaultConfig returns the sidecar's defaults. WorkerThreads and Timeout are
// left unset so the hub-wide --worker-threads / --timeout can apply.
func DefaultConfig() (c Config) { cfgflag.Reset(c.flags()...); return c }

// AddFlags registers the resizer's flags. Flags that several sidecars share
// with different defaults carry the "resizer-" prefix; --resizer-worker-threads
// and --resizer-timeout come from internal/app's controller registry.
func (c *Config) AddFlags(fs *flag.FlagSet) { cfgflag.Add(fs, c.flags()...) }

// flags is the resizer's flag table: names, defaults and help.
func (c *Config) flags() []cfgflag.Flag {
	return []cfgflag.Flag{
		cfgflag.Bool(&c.ExtraModifyMetadata, "extra-modify-metadata", false,
			"Add PVC and PV names (csi.storage.k8s.io/pvc/name, pvc/namespace, pv/name) to the parameters of ControllerModifyVolume."),
		cfgflag.Bool(&c.AnnotateFsResize, "resizer-annotate-fs-resize", false,
			"Record the PVC's previous capacity on the PV (volume.alpha.kubernetes.io/pre-resize-capacity) while a node expansion is pending (external-resizer's AnnotateFsResize feature gate)."),
		cfgflag.Bool(&c.HandleVolumeInUseError, "handle-volume-inuse-error", true,
			"After ControllerExpandVolume fails with FailedPrecondition, expand the volume again only once no Pod uses its claim (watches Pods, keeping only their claim names)."),
	}
}
