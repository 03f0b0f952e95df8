// Package transport is how a volume's backing file on the storage host becomes a
// block device on a node. The controller side (Target) exports volumes and grants
// nodes access; the node side (Initiator) turns the publish context that
// ControllerPublishVolume returned into a local block device.
//
// Two transports exist: "loop" (node and storage host share the pool directory;
// single-node clusters and tests) and "nvme" (NVMe over TCP through the Linux nvmet
// target). Both must fit this shape: a transport name plus its own addressing keys
// in the publish context.
package transport

import "context"

// Publish-context keys common to every transport. Transport-specific keys are
// defined by each transport and prefixed with its name.
const (
	// KeyTransport names the transport that produced the publish context.
	KeyTransport = "transport"
	// KeyVolumeID is the volume the device must prove to be before the node touches it.
	KeyVolumeID = "volumeID"
)

// Volume is what a transport needs to know about a volume.
type Volume struct {
	ID          string // vol-<hex>
	BackingFile string // absolute path of the backing file in the pool
	SizeBytes   int64
}

// Target is the storage-host side of a transport.
type Target interface {
	Name() string
	// Export makes the volume reachable by the transport (nvme: create the subsystem
	// and namespace). Idempotent. Called on create and, for every volume, at start-up
	// (exports may not survive a reboot).
	Export(ctx context.Context, vol Volume) error
	// Unexport undoes Export. Idempotent; a volume never exported is success.
	Unexport(ctx context.Context, vol Volume) error
	// Publish grants nodeID access and returns the publish context the node needs.
	Publish(ctx context.Context, vol Volume, nodeID string) (map[string]string, error)
	// Unpublish revokes nodeID's access. Idempotent.
	Unpublish(ctx context.Context, vol Volume, nodeID string) error
	// Resized tells the transport the backing file grew (nvme: revalidate the namespace).
	Resized(ctx context.Context, vol Volume) error
	// AccessibleTopology returns the topology segments a volume created on this
	// target is reachable from, given the controller's own node (loop: that node only;
	// nvme: a zone-style key).
	AccessibleTopology() map[string]string
}

// Initiator is the node side of a transport.
type Initiator interface {
	Name() string
	// Attach makes the volume a local block device and returns its path. It must verify
	// that the device really is volumeID (loop: backing file; nvme: serial) and refuse
	// otherwise. Idempotent: an already-attached volume returns the existing device.
	Attach(ctx context.Context, volumeID string, publishContext map[string]string) (devicePath string, err error)
	// Detach removes the local device of volumeID. Idempotent.
	Detach(ctx context.Context, volumeID string, publishContext map[string]string) error
	// Device returns the current local device of volumeID, or "" if not attached.
	Device(ctx context.Context, volumeID string, publishContext map[string]string) (string, error)
	// Rescan makes the local device pick up a new size of the backing store.
	Rescan(ctx context.Context, volumeID, devicePath string) error
}
