package provisioner

import (
	"flag"
	"time"
)

// Defaults of the external-provisioner sidecar.
const (
	DefaultWorkerThreads = 100
	DefaultTimeout       = 10 * time.Second
	DefaultNamePrefix    = "pvc"
)

// Config holds the provisioner's own flags. Zero WorkerThreads/Timeout mean
// "the global --worker-threads/--timeout if given, else the sidecar default".
type Config struct {
	WorkerThreads             int
	Timeout                   time.Duration
	VolumeNamePrefix          string
	VolumeNameUUIDLength      int
	ExtraCreateMetadata       bool
	DefaultFSType             string
	StrictTopology            bool
	ImmediateTopology         bool
	ControllerPublishReadOnly bool

	// Storage capacity tracking (CSIStorageCapacity objects for the scheduler).
	EnableCapacity              bool
	CapacityPollInterval        time.Duration
	CapacityForImmediateBinding bool
	CapacityOwnerrefLevel       int
}

// DefaultConfig returns the sidecar's defaults.
func DefaultConfig() Config {
	return Config{
		VolumeNamePrefix:     DefaultNamePrefix,
		VolumeNameUUIDLength: -1,
		ImmediateTopology:    true,

		CapacityPollInterval:  time.Minute,
		CapacityOwnerrefLevel: 1,
	}
}

// AddFlags registers the flags under the sidecar's names (worker threads and
// timeout are prefixed because every controller has its own default).
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.WorkerThreads, "provisioner-worker-threads", c.WorkerThreads,
		"Provisioner workers (for PVCs and for PVs each); 0 means --worker-threads if set, else 100.")
	fs.DurationVar(&c.Timeout, "provisioner-timeout", c.Timeout,
		"Timeout of CreateVolume/DeleteVolume calls; 0 means --timeout if set, else 10s.")
	fs.StringVar(&c.VolumeNamePrefix, "volume-name-prefix", c.VolumeNamePrefix,
		"Prefix of the names of provisioned volumes (CreateVolume name and PV name: <prefix>-<PVC UID>).")
	fs.IntVar(&c.VolumeNameUUIDLength, "volume-name-uuid-length", c.VolumeNameUUIDLength,
		"Truncate the PVC UID (dashes removed) to this length in volume names; -1 keeps the whole UID.")
	fs.BoolVar(&c.ExtraCreateMetadata, "extra-create-metadata", c.ExtraCreateMetadata,
		"Add csi.storage.k8s.io/pvc/name, pvc/namespace and pv/name to CreateVolume parameters.")
	fs.StringVar(&c.DefaultFSType, "default-fstype", c.DefaultFSType,
		"Filesystem type for volumes whose StorageClass sets no csi.storage.k8s.io/fstype; empty lets the driver choose.")
	fs.BoolVar(&c.StrictTopology, "strict-topology", c.StrictTopology,
		"With delayed binding, pass only the selected node's topology as requisite and preferred.")
	fs.BoolVar(&c.ImmediateTopology, "immediate-topology", c.ImmediateTopology,
		"With immediate binding and no allowedTopologies, pass the topology of all nodes the driver runs on.")
	fs.BoolVar(&c.ControllerPublishReadOnly, "controller-publish-readonly", c.ControllerPublishReadOnly,
		"Set readOnly on the PV's CSI source when the PVC's only access mode is ReadOnlyMany.")
	fs.BoolVar(&c.EnableCapacity, "enable-capacity", c.EnableCapacity,
		"Publish CSIStorageCapacity objects from GetCapacity (in the namespace of $NAMESPACE) for the scheduler.")
	fs.DurationVar(&c.CapacityPollInterval, "capacity-poll-interval", c.CapacityPollInterval,
		"How often to refresh CSIStorageCapacity objects with GetCapacity.")
	fs.BoolVar(&c.CapacityForImmediateBinding, "capacity-for-immediate-binding", c.CapacityForImmediateBinding,
		"Also publish capacity for StorageClasses with Immediate binding.")
	fs.IntVar(&c.CapacityOwnerrefLevel, "capacity-ownerref-level", c.CapacityOwnerrefLevel,
		"Owner of CSIStorageCapacity objects, counted from the pod $POD_NAME: -1 none, 0 the pod, 1 its StatefulSet/DaemonSet/ReplicaSet, 2 a Deployment.")
}

func (c Config) validate() error {
	if c.VolumeNamePrefix == "" {
		return errorf("--volume-name-prefix must not be empty")
	}
	if c.VolumeNameUUIDLength == 0 || c.VolumeNameUUIDLength < -1 {
		return errorf("--volume-name-uuid-length must be -1 or positive, got %d", c.VolumeNameUUIDLength)
	}
	if c.EnableCapacity && c.CapacityPollInterval <= 0 {
		return errorf("--capacity-poll-interval must be positive, got %s", c.CapacityPollInterval)
	}
	if c.CapacityOwnerrefLevel < -1 {
		return errorf("--capacity-ownerref-level must be -1 or more, got %d", c.CapacityOwnerrefLevel)
	}
	if c.WorkerThreads < 0 {
		return errorf("--provisioner-worker-threads must not be negative, got %d", c.WorkerThreads)
	}
	return nil
}
