package provisioner

import (
	"flag"
	"time"

	"github.com/csi-hub/csi-hub/internal/cfgflag"
	"github.com/csi-hub/csi-hub/internal/hub"
)

// DefaultNamePrefix is the external-provisioner's --volume-name-prefix.
const DefaultNamePrefix = "pvc"

// Defaults are the sidecar's worker count and CSI call timeout, used when
// neither --provisioner-worker-threads / --provisioner-timeout nor the global flags are given
// (hub.Options.Tune).
var Defaults = hub.Tuning{Workers: 100, Timeout: 10 * time.Second}

// Config holds the provisioner's own flags. Zero WorkerThreads/Timeout mean
// "the global --worker-threads/--timeout if given, else the sidecar default".
type Config struct {
	// Tuning: workers for PVCs and for PVs each; timeout of CreateVolume and
	// DeleteVolume.
	cfgflag.Tuning
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
func DefaultConfig() (c Config) { cfgflag.Reset(c.flags()...); return c }

// AddFlags registers the flags under the sidecar's names.
// --provisioner-worker-threads and --provisioner-timeout (prefixed because
// every controller has its own default) come from internal/app's registry.
func (c *Config) AddFlags(fs *flag.FlagSet) { cfgflag.Add(fs, c.flags()...) }

func (c Config) validate() error {
	if err := cfgflag.Check(c.flags()...); err != nil {
		return err
	}
	// Both flags at once, and only with capacity tracking: not one flag's rule.
	if c.EnableCapacity && (c.KubeAPICapacityQPS <= 0 || c.KubeAPICapacityBurst < 1) {
		return errorf("--kube-api-capacity-qps and --kube-api-capacity-burst must be positive, got %v and %d", c.KubeAPICapacityQPS, c.KubeAPICapacityBurst)
	}
	return nil
}

// flags is the provisioner's flag table: names, defaults, help and checks.
func (c *Config) flags() []cfgflag.Flag {
	atLeastOne := cfgflag.AtLeast(1, "must be at least 1")
	return []cfgflag.Flag{
		cfgflag.String(&c.VolumeNamePrefix, "volume-name-prefix", DefaultNamePrefix,
			"Prefix of the names of provisioned volumes (CreateVolume name and PV name: <prefix>-<PVC UID>).", cfgflag.NotEmpty()),
		cfgflag.Int(&c.VolumeNameUUIDLength, "volume-name-uuid-length", -1,
			"Truncate the PVC UID (dashes removed) to this length in volume names; -1 keeps the whole UID.", cfgflag.MinusOneOrPositive("must be -1 or positive")),
		cfgflag.Bool(&c.ExtraCreateMetadata, "extra-create-metadata", false,
			"Add csi.storage.k8s.io/pvc/name, pvc/namespace and pv/name to CreateVolume parameters."),
		cfgflag.String(&c.DefaultFSType, "default-fstype", "",
			"Filesystem type for volumes whose StorageClass sets no csi.storage.k8s.io/fstype; empty lets the driver choose."),
		cfgflag.Bool(&c.StrictTopology, "strict-topology", false,
			"With delayed binding, pass only the selected node's topology as requisite and preferred."),
		cfgflag.Bool(&c.ImmediateTopology, "immediate-topology", true,
			"With immediate binding and no allowedTopologies, pass the topology of all nodes the driver runs on."),
		cfgflag.Bool(&c.ControllerPublishReadOnly, "controller-publish-readonly", false,
			"Set readOnly on the PV's CSI source when the PVC's only access mode is ReadOnlyMany."),
		cfgflag.Bool(&c.EnableCapacity, "enable-capacity", false,
			"Publish CSIStorageCapacity objects from GetCapacity (in the namespace of $NAMESPACE) for the scheduler."),
		cfgflag.Duration(&c.CapacityPollInterval, "capacity-poll-interval", time.Minute,
			"How often to refresh CSIStorageCapacity objects with GetCapacity.", cfgflag.Positive[time.Duration]().If(&c.EnableCapacity)),
		cfgflag.Bool(&c.CapacityForImmediateBinding, "capacity-for-immediate-binding", false,
			"Also publish capacity for StorageClasses with Immediate binding."),
		cfgflag.Int(&c.CapacityOwnerrefLevel, "capacity-ownerref-level", 1,
			"Owner of CSIStorageCapacity objects, counted from the pod $POD_NAME: -1 none, 0 the pod, 1 its StatefulSet/DaemonSet/ReplicaSet, 2 a Deployment.", cfgflag.AtLeast(-1, "must be -1 or more")),
		cfgflag.Int(&c.CapacityThreads, "capacity-threads", 1,
			"Number of GetCapacity calls run at once for CSIStorageCapacity objects.", atLeastOne),
		cfgflag.Float64(&c.KubeAPICapacityQPS, "kube-api-capacity-qps", 1,
			"QPS of the CSIStorageCapacity updates' own API client."),
		cfgflag.Int(&c.KubeAPICapacityBurst, "kube-api-capacity-burst", 5,
			"Burst of the CSIStorageCapacity updates' own API client."),
		cfgflag.Int(&c.CloningProtectionThreads, "cloning-protection-threads", 1,
			"Workers adding and removing the source-protection finalizers of clone and snapshot sources.", atLeastOne),
		cfgflag.Bool(&c.PreventVolumeModeConversion, "prevent-volume-mode-conversion", true,
			"Refuse to restore a VolumeSnapshot into a PVC of another volumeMode unless its VolumeSnapshotContent has snapshot.storage.kubernetes.io/allow-volume-mode-change: \"true\"."),
		cfgflag.Duration(&c.SnapshotOrphanSweepInterval, "snapshot-orphan-sweep-interval", 5*time.Minute,
			"Accepted for compatibility; csi-hub's source guard rechecks every protected source on each informer resync."),
		cfgflag.Bool(&c.NodeDeployment, "node-deployment", false,
			"Run beside the CSI driver on each node (node-local volumes): provision only claims whose selected node is $NODE_NAME, no leader election; the snapshotter handles only contents managed by this node."),
		cfgflag.Bool(&c.NodeDeploymentImmediateBinding, "node-deployment-immediate-binding", true,
			"With --node-deployment, also provision claims of Immediate StorageClasses: the nodes compete for each by setting its selected-node annotation."),
		cfgflag.Duration(&c.NodeDeploymentBaseDelay, "node-deployment-base-delay", 20*time.Second,
			"With --node-deployment, how long a node first waits before trying to take an Immediate claim (doubles per lost attempt)."),
		cfgflag.Duration(&c.NodeDeploymentMaxDelay, "node-deployment-max-delay", time.Minute,
			"With --node-deployment, the longest wait before trying to take an Immediate claim."),
	}
}
