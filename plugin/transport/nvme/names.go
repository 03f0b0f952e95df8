// Package nvme is the NVMe over TCP transport: the storage host exports each
// volume as a Linux nvmet subsystem through configfs (Target), and nodes connect
// to it with nvme-cli and the kernel's nvme-tcp initiator (Initiator).
//
// Addressing, all derived from the volume ID so that a restarted controller
// rebuilds exactly the same exports from its store:
//   - subsystem NQN: NQNPrefix + volume ID (an NQN may be 223 bytes long);
//   - controller serial: the volume ID when it fits the 20 ASCII characters of the
//     NVMe Identify Controller SN field (vol-<16 hex> fits exactly); a longer ID
//     drops the dash after "vol" like EBS volumes on Nitro do, then is cut to 20.
//     The serial is what a human sees (and what the node refuses a mismatch on);
//   - namespace UUID: a name-based UUID of the full volume ID, which the node also
//     checks, so even two IDs sharing a 20-character serial cannot be confused.
//
// Node identity: a node of this transport uses its host NQN as its CSI node ID.
// ControllerPublishVolume therefore receives the NQN to allow directly, with no
// mapping table that could go stale (see HostNQN).
package nvme

import (
	"crypto/sha256"
	"fmt"
	"strings"
)

// Name is the transport name, the value of transport.KeyTransport.
const Name = "nvme"

// Publish-context keys of this transport.
const (
	KeyTraddr  = "nvme.traddr"  // target IP address the node connects to
	KeyTrsvcid = "nvme.trsvcid" // target TCP port
	KeyNQN     = "nvme.nqn"     // subsystem NQN of the volume
	KeySerial  = "nvme.serial"  // controller serial the device must report
	KeyUUID    = "nvme.uuid"    // namespace UUID the device must report
)

// NQNPrefix starts the subsystem NQN of every volume.
const NQNPrefix = "nqn.2024-01.io.csi-hub:"

// DefaultPort is the IANA port of NVMe/TCP I/O controllers.
const DefaultPort = 4420

const (
	maxSerialLen = 20  // NVMe Identify Controller SN, bytes
	maxNQNLen    = 223 // NVMe base spec, bytes
)

// SubsystemNQN is the NQN of the subsystem that exports volumeID.
func SubsystemNQN(volumeID string) string { return NQNPrefix + volumeID }

// VolumeIDFromNQN returns the volume ID in a subsystem NQN of this transport.
func VolumeIDFromNQN(nqn string) (string, bool) {
	id, ok := strings.CutPrefix(nqn, NQNPrefix)
	return id, ok && id != ""
}

// Serial is the controller serial that volumeID is exported with.
func Serial(volumeID string) string {
	if len(volumeID) <= maxSerialLen {
		return volumeID
	}
	s := volumeID
	if rest, ok := strings.CutPrefix(s, "vol-"); ok {
		s = "vol" + rest
	}
	if len(s) > maxSerialLen {
		s = s[:maxSerialLen]
	}
	return s
}

// NamespaceUUID is the namespace UUID that volumeID is exported with: a
// SHA-256 name-based UUID (RFC 9562 version 8) so it is stable across restarts.
func NamespaceUUID(volumeID string) string {
	sum := sha256.Sum256([]byte("csi-hub nvme namespace\x00" + volumeID))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ValidateVolumeID refuses IDs that cannot name a configfs directory or fit in
// an NQN or a serial.
func ValidateVolumeID(volumeID string) error {
	if volumeID == "" {
		return fmt.Errorf("volume ID is empty")
	}
	if len(SubsystemNQN(volumeID)) > maxNQNLen {
		return fmt.Errorf("volume ID %q is too long for an NQN (%d bytes max)", volumeID, maxNQNLen-len(NQNPrefix))
	}
	if !printableNoSlash(volumeID) || strings.ContainsRune(volumeID, ' ') {
		return fmt.Errorf("volume ID %q must be printable ASCII without spaces or '/'", volumeID)
	}
	return nil
}

// ValidateHostNQN checks a host NQN (the node ID of this transport's nodes).
func ValidateHostNQN(nqn string) error {
	switch {
	case nqn == "":
		return fmt.Errorf("host NQN is empty")
	case !strings.HasPrefix(nqn, "nqn."):
		return fmt.Errorf("host NQN %q does not start with \"nqn.\" (the node ID of an nvme node is its host NQN)", nqn)
	case len(nqn) > maxNQNLen:
		return fmt.Errorf("host NQN %q is longer than %d bytes", nqn, maxNQNLen)
	case !printableNoSlash(nqn) || nqn == "." || nqn == "..":
		return fmt.Errorf("host NQN %q must be printable ASCII without '/'", nqn)
	}
	return nil
}

func printableNoSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e || s[i] == '/' {
			return false
		}
	}
	return true
}

// ZoneTopologyKey is the segment key of nvme volumes: topology.<driver>/zone.
// A volume is reachable from every node that reaches the target, so the
// controller (TargetConfig.TopologyKey) and each node (NodeGetInfo) report the
// same zone value instead of a per-node one.
func ZoneTopologyKey(driverName string) string { return "topology." + driverName + "/zone" }
