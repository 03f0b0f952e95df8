// Package sanity runs the upstream CSI conformance suite (csi-sanity,
// github.com/kubernetes-csi/csi-test/v5/pkg/sanity) against the real plugin:
// controller, identity and node in one process on a temporary pool, with real
// loop devices and real mounts, with access type mount and with block, each
// both as csi-sanity's default invocation and with parameter files.
package sanity

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/plugin"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/plugin/transport/loop"
	"github.com/csi-hub/csi-hub/test/sanityreport"
)

const (
	driverName = "block.csi-hub.io"
	nodeID     = "sanity-node"
)

// allowedSkips are the skip messages of specs for capabilities the plugin does
// not claim; any other skip fails the test.
var allowedSkips = []string{
	"NodeGetStorageHealth not supported",                   // node: GET_STORAGE_HEALTH not claimed
	"ControllerPublishVolume.readonly field not supported", // controller: PUBLISH_READONLY not claimed
	"SNAPSHOT_ACCESSIBILITY_CONSTRAINTS not supported",     // identity: not claimed
	"No MaxVolumesPerNode",                                 // node: max_volumes_per_node 0 (no limit)
}

func TestSanity(t *testing.T) {
	testutil.SkipUnit(t, "csi-sanity's whole suite against the plugin on real loop devices and mounts; it runs in make test (go test ./test/sanity/)")
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING csi-sanity: it needs root for real loop devices and mounts. Run as root: go test ./test/sanity/")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "blkid", "resize2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing: run hack/install-deps.sh", tool)
		}
	}
	files := t.TempDir()
	paramsFile := filepath.Join(files, "parameters.yaml")
	mutableFile := filepath.Join(files, "mutable-parameters.yaml")
	if err := os.WriteFile(paramsFile, []byte("type: thin\ntier: gold\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mutableFile, []byte("tier: silver\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Both the invocation a user types first (no parameter files: volumes
	// with no parameters, ControllerModifyVolume with none) and the one with
	// the driver's parameters.
	invocations := []struct{ name, params, mutable string }{
		{"default invocation", "", ""},
		{"with parameter files", paramsFile, mutableFile},
	}
	accessTypes := []string{"mount", "block"}
	for _, inv := range invocations {
		for _, accessType := range accessTypes {
			cfg := startDriver(t, accessType, inv.params, inv.mutable)
			Describe("access type "+accessType+", "+inv.name, func() { sanity.GinkgoTest(cfg) })
		}
	}

	counts := sanityreport.Register()
	RegisterFailHandler(Fail)
	suiteConfig, reporterConfig := GinkgoConfiguration()
	reporterConfig.Succinct = true
	RunSpecs(t, "csi-sanity against csi-hub-plugin", suiteConfig, reporterConfig)
	counts.Check(t, "csi-sanity", len(invocations)*len(accessTypes), allowedSkips)
}

// startDriver starts controller+identity+node on a pool in a temporary dir
// and returns the sanity configuration aimed at it. Cleanup leaves no mount
// and no loop device behind, even if the suite fails half-way.
func startDriver(t *testing.T, accessType, paramsFile, mutableFile string) *sanity.TestConfig {
	root := t.TempDir()
	pool := filepath.Join(root, "pool")
	for _, d := range []string{pool, filepath.Join(root, "csi")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	node, err := plugin.NewNodeServer(plugin.NodeConfig{DriverName: driverName, NodeID: nodeID,
		Topology: map[string]string{plugin.TopologyNodeKey(driverName): nodeID}, Initiator: loop.NewInitiator(),
		StateDir: filepath.Join(root, "node-state")})
	if err != nil {
		t.Fatal(err)
	}
	d := plugintest.Start(t, plugintest.Options{DriverName: driverName, NodeID: nodeID, PoolDir: pool, Capacity: 200 << 30, Node: node})
	t.Cleanup(func() { cleanupBelow(t, root) })

	cfg := sanity.NewTestConfig()
	cfg.Address = d.Endpoint
	cfg.TargetPath = filepath.Join(root, "csi", "target")
	cfg.StagingPath = filepath.Join(root, "csi", "staging")
	cfg.TestVolumeAccessType = accessType
	cfg.TestVolumeParametersFile = paramsFile
	cfg.TestVolumeMutableParametersFile = mutableFile
	// Run the attach-limit spec; it skips itself because the node reports no limit.
	cfg.TestNodeVolumeAttachLimit = true
	return &cfg
}

// cleanupBelow unmounts whatever is still mounted below root and detaches loop
// devices of files below root, reporting them: a clean run leaves nothing.
func cleanupBelow(t *testing.T, root string) {
	raw, _ := os.ReadFile("/proc/mounts")
	var mounts []string
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], root) {
			mounts = append(mounts, f[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		t.Errorf("left mounted after csi-sanity: %s", mounts[i])
		_ = unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
	out, _ := exec.Command("losetup", "--all", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], root) {
			t.Errorf("loop device left attached after csi-sanity: %s", line)
			_ = exec.Command("losetup", "--detach", f[0]).Run()
		}
	}
}
