package attacher

import (
	"flag"
	"time"

	"github.com/csi-hub/csi-hub/internal/cfgflag"
	"github.com/csi-hub/csi-hub/internal/hub"
)

// Defaults of the external-attacher sidecar.
const (
	DefaultWorkerThreads = 10
	DefaultTimeout       = 15 * time.Second
	DefaultReconcileSync = time.Minute
)

// Defaults are the sidecar's worker count and CSI call timeout, used when
// neither --attacher-worker-threads / --attacher-timeout nor the global flags are given
// (hub.Options.Tune).
var Defaults = hub.Tuning{Workers: DefaultWorkerThreads, Timeout: DefaultTimeout}

// Config holds the attacher's own flags.
type Config struct {
	// Tuning: workers of each queue (VolumeAttachments, PersistentVolumes);
	// timeout of each ControllerPublish/Unpublish and ListVolumes call.
	cfgflag.Tuning
	// ReconcileSync is how often VolumeAttachments are compared with the
	// driver's ListVolumes (only for drivers with LIST_VOLUMES_PUBLISHED_NODES).
	ReconcileSync time.Duration
	// MaxEntries is the page size of ListVolumes; 0: no limit.
	MaxEntries int
	// DefaultFSType is passed to ControllerPublishVolume for filesystem volumes
	// whose PV does not name one.
	DefaultFSType string

	fsTypeSet bool // --attacher-default-fstype was given
}

// DefaultConfig returns the sidecar's defaults. WorkerThreads and Timeout are
// left unset so the hub-wide --worker-threads / --timeout can apply.
func DefaultConfig() (c Config) { cfgflag.Reset(c.flags()...); return c }

// AddFlags registers the attacher's flags under the external-attacher's
// names, but for --attacher-default-fstype. --attacher-worker-threads and
// --attacher-timeout come from internal/app's controller registry.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	cfgflag.Add(fs, c.flags()...)
	// --default-fstype is a flag of both external-provisioner and
	// external-attacher: a value given under that name reaches both, as each
	// sidecar would have received it; --attacher-default-fstype wins for the attacher.
	if f := fs.Lookup(defaultFSTypeFlag); f != nil {
		f.Value = &teeString{Value: f.Value, also: &c.DefaultFSType, unless: &c.fsTypeSet}
	} else {
		fs.StringVar(&c.DefaultFSType, defaultFSTypeFlag, c.DefaultFSType, "Filesystem type passed to ControllerPublishVolume when the PersistentVolume names none.")
	}
	fs.Lookup("attacher-default-fstype").Value = cfgflag.Marked[string](fs.Lookup("attacher-default-fstype").Value, &c.fsTypeSet)
}

const defaultFSTypeFlag = "default-fstype"

// teeString delivers a shared string flag to a second destination, unless
// that one was set by its own flag.
type teeString struct {
	flag.Value
	also   *string
	unless *bool
}

func (t *teeString) Set(s string) error {
	if err := t.Value.Set(s); err != nil {
		return err
	}
	if !*t.unless {
		*t.also = s
	}
	return nil
}

func (t *teeString) String() string {
	if t == nil || t.Value == nil {
		return ""
	}
	return t.Value.String()
}

// validate reports the first bad setting, naming its flag.
func (c Config) validate() error { return cfgflag.Check(c.flags()...) }

// flags is the attacher's flag table: names, defaults, help and checks.
func (c *Config) flags() []cfgflag.Flag {
	return []cfgflag.Flag{
		cfgflag.Duration(&c.ReconcileSync, "reconcile-sync", DefaultReconcileSync,
			"Interval of the VolumeAttachment reconciler (drivers with LIST_VOLUMES_PUBLISHED_NODES).", cfgflag.Positive[time.Duration]()),
		cfgflag.Int(&c.MaxEntries, "max-entries", 0,
			"Page size of the reconciler's ListVolumes calls; 0 means no limit.",
			cfgflag.AtLeast(0, "must not be negative")),
		cfgflag.String(&c.DefaultFSType, "attacher-default-fstype", "",
			"Filesystem type passed to ControllerPublishVolume when the PersistentVolume names none; overrides --default-fstype for the attacher only."),
	}
}
