package conformance

import "regexp"

// skipRule allows the specs that skip themselves with a matching message, for
// a reason the README repeats: a capability block.csi-hub.io does not claim,
// a pattern that does not apply to an external CSI driver, or this cluster's
// shape (one node). Any other skip fails the run.
type skipRule struct {
	message *regexp.Regexp
	reason  string
}

func rule(message, reason string) skipRule {
	return skipRule{regexp.MustCompile(message), reason}
}

var allowedSkips = []skipRule{
	// Patterns that do not apply to a dynamically provisioning external driver.
	rule(`Driver supports dynamic provisioning, skipping (PreprovisionedPV|InlineVolume) pattern`,
		"pattern: pre-provisioned and in-tree inline volumes are for drivers without dynamic provisioning"),
	rule(`does not support volume type "(InlineVolume|PreprovisionedPV|CSIInlineVolume)"`,
		"capability: no CSI ephemeral inline volumes (CSIDriver volumeLifecycleModes: [Persistent])"),
	rule(`Driver "?\S+"? doesn't support (InlineVolume|PreprovisionedPV|CSIInlineVolume) -- skipping`,
		"capability: no CSI ephemeral inline volumes (CSIDriver volumeLifecycleModes: [Persistent])"),
	rule(`Suite "\S+" does not support (InlineVolume|PreprovisionedPV|CSIInlineVolume|GenericEphemeralVolume)`,
		"pattern: the suite does not run this volume type"),
	rule(`volume type "\S+" is (not )?ephemeral`, "pattern: the spec is for the other volume lifetime"),
	rule(`This test doesn't work with pre-provisioned volume`, "pattern: the spec is for dynamic volumes only"),
	rule(`Filesystem volume case should be covered by block volume case`, "pattern: covered by the block-mode variant"),
	rule(`Test is not valid for Block volume mode|Test for Block volumes is not implemented|Test does not support non-filesystem volume mode|skipping multiple PV mount test for block mode|raw block volumes cannot be read-only|Block volumes do not support mount options`,
		"pattern: the spec has no block-mode variant"),
	rule(`Skipping (PreprovisionedPV|InlineVolume|CSIInlineVolume) test for expansion`, "pattern: expansion needs a dynamic volume"),
	rule(`Multiple generic ephemeral volumes with immediate binding`, "pattern: immediate binding variant (the manifests' classes wait for the first consumer)"),
	rule(`VolumeBindingMode immediate is not compatible with a multi-topology environment`,
		"pattern: the ephemeral suite's immediate-binding variant is for drivers without topology keys (testdriver.yaml declares topology.block.csi-hub.io/node)"),
	rule(`Driver "?\S+"? does not support snapshots - skipping`,
		"pattern: the multiVolume snapshot spec runs in the patterns with a snapshot type (the xfs and block ones); this one has none"),
	rule(`WaitForFirstConsumer binding mode currently not supported for (this test|performance tests)`,
		"pattern: the manifests' classes use WaitForFirstConsumer, which this spec does not handle"),

	// Capabilities block.csi-hub.io does not claim (test/conformance/testdriver.yaml).
	rule(`does not support ROX access mode`, "capability: no ReadOnlyMany (MULTI_NODE_READER_ONLY): volumes reach one node"),
	rule(`doesn't support RWX -- skipping`, "capability: no ReadWriteMany: volumes reach one node"),
	rule(`Driver \S+ doesn't support ntfs -- skipping|does not support "ntfs" fs type|Distro \S* doesn't support ntfs`,
		"capability: no ntfs (ext2/3/4 and xfs only)"),
	rule(`does not support "(ext3|ext4)" fs type`, "testdriver-xfs.yaml: its class is xfs; ext patterns run on testdriver.yaml"),
	rule(`Driver \S+ does not support volume limits|driver \S+ does not support volume limits`,
		"capability: no per-node volume limit (NodeGetInfo max_volumes_per_node 0)"),
	rule(`Driver \S+ doesn't publish storage capacity`, "manifests: capacity tracking is off (CSIDriver storageCapacity: false)"),
	rule(`this driver does not support multiple PVs with the same volumeHandle`, "capability: one PV per volume handle"),
	rule(`supports VolumeMountGroup, which is incompatible`, "pattern: for drivers with VOLUME_MOUNT_GROUP"),
	rule(`doesn't specify performance test options`, "option: the performance specs need per-cluster latency baselines (PerformanceTestOptions), not set"),

	// The cluster's shape: one node (hack/cluster), so one topology segment.
	rule(`Not enough topologies in cluster`, "cluster: one node, one topology segment (the spec needs two)"),
	rule(`Number of available nodes is less than \d+|No topology with at least \d+ nodes found`, "cluster: one node (the spec needs more)"),
	rule(`Driver \S+ only supports singleNodeVolume -- skipping`, "cluster: the spec needs volumes reachable from several nodes"),
}

// explainSkip returns the reason a skip message is allowed.
func explainSkip(msg string, rules []skipRule) (string, bool) {
	for _, r := range rules {
		if r.message.MatchString(msg) {
			return r.reason, true
		}
	}
	return "", false
}

// e2eTestOnlySkips are allowed in e2e.test's passes only. The group snapshot
// suite skips there for every external driver: v1.34.4's external testdriver
// (test/e2e/storage/external) does not implement
// storageframework.VoulmeGroupSnapshottableTestDriver (it has no
// GetVolumeGroupSnapshotClass). The group-snapshot pass runs the same suite with
// groupsnapshot.test (test/tools/e2e/groupsnapshot), where this skip fails the run.
var e2eTestOnlySkips = []skipRule{
	rule(`Driver "\S+" does not support group snapshots - skipping`,
		"e2e.test v1.34.4: its external testdriver lacks GetVolumeGroupSnapshotClass (VoulmeGroupSnapshottableTestDriver); the group-snapshot pass (groupsnapshot.test) runs these specs"),
}
