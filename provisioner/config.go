package provisioner

import (
	"flag"
	"time"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// Defaults of the external-provisioner sidecar.
const (
	DefaultWorkerThreads = 100
	DefaultTimeout       = 10 * time.Second
	DefaultNamePrefix    = "pvc"
)

// Defaults are the sidecar's worker count and CSI call timeout, used when
// neither --provisioner-worker-threads / --provisioner-timeout nor the global flags are given
// (hub.Options.Tune).
var Defaults = hub.Tuning{Workers: DefaultWorkerThreads, Timeout: DefaultTimeout}

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
	// CapacityThreads is how many GetCapacity calls run at once.
	CapacityThreads int
	// KubeAPICapacityQPS/Burst are the capacity client's own budget.
	KubeAPICapacityQPS   float64
	KubeAPICapacityBurst int

	// CloningProtectionThreads are the workers that add and remove the
	// source-protection finalizers of clone and snapshot sources.
	CloningProtectionThreads int
	// PreventVolumeModeConversion refuses a restore whose volumeMode differs
	// from the snapshot's source unless the content allows it; false lets any
	// restore change the mode, as the sidecar with the flag off.
	PreventVolumeModeConversion bool
	// SnapshotOrphanSweepInterval is accepted for compatibility: csi-hub's
	// source guard resyncs every source itself (see the README).
	SnapshotOrphanSweepInterval time.Duration
	// NodeDeployment is --node-deployment: distributed provisioning by one
	// csi-hub per node (nodedeployment.go), with the sidecar's
	// --node-deployment-immediate-binding, -base-delay and -max-delay.
	NodeDeployment                 bool
	NodeDeploymentImmediateBinding bool
	NodeDeploymentBaseDelay        time.Duration
	NodeDeploymentMaxDelay         time.Duration
	// NodeName is this node with NodeDeployment; empty means $NODE_NAME.
	NodeName string
}

// DefaultConfig returns the sidecar's defaults.
func DefaultConfig() Config {
	return Config{
		VolumeNamePrefix:     DefaultNamePrefix,
		VolumeNameUUIDLength: -1,
		ImmediateTopology:    true,

		CapacityPollInterval:  time.Minute,
		CapacityOwnerrefLevel: 1,
		CapacityThreads:       1,
		KubeAPICapacityQPS:    1,
		KubeAPICapacityBurst:  5,

		CloningProtectionThreads:       1,
		PreventVolumeModeConversion:    true,
		SnapshotOrphanSweepInterval:    5 * time.Minute,
		NodeDeploymentImmediateBinding: true,
		NodeDeploymentBaseDelay:        20 * time.Second,
		NodeDeploymentMaxDelay:         time.Minute,
	}
}

// AddFlags registers the flags under the sidecar's names.
// --provisioner-worker-threads and --provisioner-timeout (prefixed because
// every controller has its own default) come from internal/app's registry.
func (c *Config) AddFlags(fs *flag.FlagSet) {
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
	fs.IntVar(&c.CapacityThreads, "capacity-threads", c.CapacityThreads, "Number of GetCapacity calls run at once for CSIStorageCapacity objects.")
	fs.Float64Var(&c.KubeAPICapacityQPS, "kube-api-capacity-qps", c.KubeAPICapacityQPS, "QPS of the CSIStorageCapacity updates' own API client.")
	fs.IntVar(&c.KubeAPICapacityBurst, "kube-api-capacity-burst", c.KubeAPICapacityBurst, "Burst of the CSIStorageCapacity updates' own API client.")
	fs.IntVar(&c.CloningProtectionThreads, "cloning-protection-threads", c.CloningProtectionThreads, "Workers adding and removing the source-protection finalizers of clone and snapshot sources.")
	fs.BoolVar(&c.PreventVolumeModeConversion, "prevent-volume-mode-conversion", c.PreventVolumeModeConversion,
		"Refuse to restore a VolumeSnapshot into a PVC of another volumeMode unless its VolumeSnapshotContent has snapshot.storage.kubernetes.io/allow-volume-mode-change: \"true\".")
	fs.DurationVar(&c.SnapshotOrphanSweepInterval, "snapshot-orphan-sweep-interval", c.SnapshotOrphanSweepInterval,
		"Accepted for compatibility; csi-hub's source guard rechecks every protected source on each informer resync.")
	fs.BoolVar(&c.NodeDeployment, "node-deployment", c.NodeDeployment,
		"Run beside the CSI driver on each node (node-local volumes): provision only claims whose selected node is $NODE_NAME, no leader election; the snapshotter handles only contents managed by this node.")
	fs.BoolVar(&c.NodeDeploymentImmediateBinding, "node-deployment-immediate-binding", c.NodeDeploymentImmediateBinding,
		"With --node-deployment, also provision claims of Immediate StorageClasses: the nodes compete for each by setting its selected-node annotation.")
	fs.DurationVar(&c.NodeDeploymentBaseDelay, "node-deployment-base-delay", c.NodeDeploymentBaseDelay,
		"With --node-deployment, how long a node first waits before trying to take an Immediate claim (doubles per lost attempt).")
	fs.DurationVar(&c.NodeDeploymentMaxDelay, "node-deployment-max-delay", c.NodeDeploymentMaxDelay,
		"With --node-deployment, the longest wait before trying to take an Immediate claim.")
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
	if c.CapacityThreads < 1 {
		return errorf("--capacity-threads must be at least 1, got %d", c.CapacityThreads)
	}
	if c.CloningProtectionThreads < 1 {
		return errorf("--cloning-protection-threads must be at least 1, got %d", c.CloningProtectionThreads)
	}
	if c.EnableCapacity && (c.KubeAPICapacityQPS <= 0 || c.KubeAPICapacityBurst < 1) {
		return errorf("--kube-api-capacity-qps and --kube-api-capacity-burst must be positive, got %v and %d", c.KubeAPICapacityQPS, c.KubeAPICapacityBurst)
	}
	return nil
}
