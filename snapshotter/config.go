package snapshotter

import (
	"flag"
	"strconv"
	"time"

	"github.com/csi-hub/csi-hub/internal/cfgflag"
	"github.com/csi-hub/csi-hub/internal/hub"
)

// Defaults of the csi-snapshotter sidecar (cmd/csi-snapshotter).
const (
	DefaultSnapshotNamePrefix = "snapshot"
	DefaultResyncPeriod       = 15 * time.Minute
	// DefaultSnapshotNameUUIDLength -1 keeps the whole UID, dashes included.
	DefaultSnapshotNameUUIDLength  = -1
	DefaultGroupSnapshotNamePrefix = "groupsnapshot"
)

// Defaults are the sidecar's worker count and CSI call timeout, used when
// neither --snapshotter-worker-threads / --snapshotter-timeout nor the global flags are given
// (hub.Options.Tune).
var Defaults = hub.Tuning{Workers: 10, Timeout: time.Minute}

// Config is the snapshotter's own configuration.
type Config struct {
	// Tuning: the workers, and the timeout of each CSI call.
	cfgflag.Tuning
	// SnapshotNamePrefix and SnapshotNameUUIDLength shape the name passed to
	// CreateSnapshot: "<prefix>-<VolumeSnapshot UID>".
	SnapshotNamePrefix     string
	SnapshotNameUUIDLength int
	// GroupSnapshotNamePrefix and GroupSnapshotNameUUIDLength shape the name
	// passed to CreateVolumeGroupSnapshot: "<prefix>-<VolumeGroupSnapshot UID>".
	GroupSnapshotNamePrefix     string
	GroupSnapshotNameUUIDLength int
	// ExtraCreateMetadata adds csi.storage.k8s.io/volumesnapshot/{name,namespace}
	// and csi.storage.k8s.io/volumesnapshotcontent/name to CreateSnapshot's parameters.
	ExtraCreateMetadata bool
	// ExtraCreateMetadataOverride is --snapshotter-extra-create-metadata: when
	// given it wins over the shared flag, so a deployment whose two sidecars had
	// different settings can be reproduced.
	ExtraCreateMetadataOverride *bool
	// ResyncPeriod is csi-snapshotter's --resync-period: how often every
	// VolumeSnapshotContent is synced again without a change.
	ResyncPeriod time.Duration
	// CRDPollInterval is how often discovery is asked for the snapshot CRDs
	// while they are absent. 0: hub.DefaultSnapshotCRDPoll.
	CRDPollInterval time.Duration
	// NodeName is set with --node-deployment (csi-snapshotter's, from
	// $NODE_NAME): only contents the snapshot-controller labelled
	// snapshot.storage.kubernetes.io/managed-by=<NodeName> are handled, as the
	// sidecar's label-filtered informer does.
	NodeName string
}

// DefaultConfig returns the sidecar's defaults. WorkerThreads and Timeout are
// left unset so the hub-wide --worker-threads / --timeout can apply.
func DefaultConfig() (c Config) { cfgflag.Reset(c.flags()...); return c }

// extraCreateMetadataFlag is shared with the provisioner, whose sidecar has a
// flag of the same name and meaning.
const extraCreateMetadataFlag = "extra-create-metadata"

// AddFlags registers the snapshotter's flags (--snapshotter-worker-threads and
// --snapshotter-timeout come from internal/app's controller registry). --extra-create-metadata is
// shared with the provisioner: when it is already registered on fs, its value
// is also delivered to this Config instead of registering it twice.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	cfgflag.Add(fs, c.flags()...)
	if f := fs.Lookup(extraCreateMetadataFlag); f != nil {
		f.Value = &teeBool{Value: f.Value, also: &c.ExtraCreateMetadata}
		_ = f.Value.Set(f.DefValue)
	} else {
		fs.BoolVar(&c.ExtraCreateMetadata, extraCreateMetadataFlag, c.ExtraCreateMetadata,
			"Add the VolumeSnapshot name and namespace and the VolumeSnapshotContent name to CreateSnapshot parameters "+
				"(csi.storage.k8s.io/volumesnapshot/name etc.); for the provisioner, the PVC and PV names to CreateVolume parameters.")
	}
	fs.Func("snapshotter-extra-create-metadata",
		"Overrides --extra-create-metadata for CreateSnapshot only (csi-snapshotter's own --extra-create-metadata).",
		func(s string) error {
			v, err := strconv.ParseBool(s)
			if err != nil {
				return err
			}
			c.ExtraCreateMetadataOverride = &v
			return nil
		})
}

// validate reports a bad setting by the flag's name.
func (c Config) validate() error { return cfgflag.Check(c.flags()...) }

// flags is the snapshotter's flag table (but the shared
// --extra-create-metadata and its override): names, defaults, help and checks.
func (c *Config) flags() []cfgflag.Flag {
	uuidLength := cfgflag.MinusOneOrPositive("must be -1 or > 0")
	notNegative := cfgflag.AtLeast[time.Duration](0, "must be >= 0")
	return []cfgflag.Flag{
		cfgflag.String(&c.SnapshotNamePrefix, "snapshot-name-prefix", DefaultSnapshotNamePrefix,
			"Prefix of the name of a created snapshot: <prefix>-<VolumeSnapshot UID>.", cfgflag.NotEmpty()),
		cfgflag.Int(&c.SnapshotNameUUIDLength, "snapshot-name-uuid-length", DefaultSnapshotNameUUIDLength,
			"Length of the VolumeSnapshot UID in a created snapshot's name, dashes removed; -1 keeps the whole UID.", uuidLength),
		cfgflag.String(&c.GroupSnapshotNamePrefix, "groupsnapshot-name-prefix", DefaultGroupSnapshotNamePrefix,
			"Prefix of the name of a created group snapshot: <prefix>-<VolumeGroupSnapshot UID>.", cfgflag.NotEmpty()),
		cfgflag.Int(&c.GroupSnapshotNameUUIDLength, "groupsnapshot-name-uuid-length", DefaultSnapshotNameUUIDLength,
			"Length of the VolumeGroupSnapshot UID in a created group snapshot's name, dashes removed; -1 keeps the whole UID.", uuidLength),
		cfgflag.Duration(&c.ResyncPeriod, "resync-period", DefaultResyncPeriod,
			"How often the snapshotter syncs every VolumeSnapshotContent again (csi-snapshotter's --resync-period; the resizer's flag of the same name is --resync here).", notNegative),
		cfgflag.Duration(&c.CRDPollInterval, "snapshot-crd-poll-interval", hub.DefaultSnapshotCRDPoll,
			"While the snapshot CRDs are not installed, how often to check whether they appeared.", notNegative),
	}
}

// teeBool delivers a shared boolean flag to a second destination.
type teeBool struct {
	flag.Value
	also *bool
}

func (t *teeBool) Set(s string) error {
	if err := t.Value.Set(s); err != nil {
		return err
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*t.also = b
	return nil
}

// String must work on a zero teeBool: flag.PrintDefaults builds one to find
// the zero value.
func (t *teeBool) String() string {
	if t == nil || t.Value == nil {
		return "false"
	}
	return t.Value.String()
}

// IsBoolFlag keeps "--extra-create-metadata" (without =true) working.
func (t *teeBool) IsBoolFlag() bool { return true }

// extraCreateMetadata is the effective setting for CreateSnapshot.
func (c *Config) extraCreateMetadata() bool {
	if c.ExtraCreateMetadataOverride != nil {
		return *c.ExtraCreateMetadataOverride
	}
	return c.ExtraCreateMetadata
}
