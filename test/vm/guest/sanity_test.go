//go:build vmguest

package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/csi-hub/csi-hub/test/sanityreport"
)

// allowedSkips are the skip messages of specs for capabilities the plugin
// does not claim; any other skip fails the test.
var allowedSkips = []string{
	"NodeGetStorageHealth not supported",
	"ControllerPublishVolume.readonly field not supported",
	"SNAPSHOT_ACCESSIBILITY_CONSTRAINTS not supported",
	"No MaxVolumesPerNode",
}

// TestSanity runs csi-sanity against the plugin wired with the nvme transport,
// once with access type mount and once with block: every volume it stages is
// a real NVMe/TCP connection to the VM's own nvmet target. Afterwards no
// export, NVMe controller or mount may be left.
func TestSanity(t *testing.T) {
	requireVM(t)
	base := "/tmp/sanity"
	d := startDriver(t, base)
	for _, accessType := range []string{"mount", "block"} {
		// sanity makes the target and staging directories, not their parents.
		if err := os.MkdirAll(filepath.Join(base, accessType), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := sanity.NewTestConfig()
		cfg.Address = d.endpoint
		cfg.TargetPath = fmt.Sprintf("%s/%s/target", base, accessType)
		cfg.StagingPath = fmt.Sprintf("%s/%s/staging", base, accessType)
		cfg.TestVolumeAccessType = accessType
		cfg.TestVolumeSize = 16 * mib
		cfg.TestVolumeExpandSize = 32 * mib
		cfg.TestVolumeParameters = map[string]string{"type": "thin", "tier": "gold"}
		cfg.TestVolumeMutableParameters = map[string]string{"tier": "silver"}
		cfg.TestNodeVolumeAttachLimit = true // skips itself: the node reports no limit
		cfg.IdempotentCount = 3
		Describe("access type "+accessType, func() { sanity.GinkgoTest(&cfg) })
	}

	counts := sanityreport.Register()
	RegisterFailHandler(Fail)
	suiteConfig, reporterConfig := GinkgoConfiguration()
	reporterConfig.Succinct = true
	reporterConfig.NoColor = true // the serial console log is read as text
	RunSpecs(t, "csi-sanity against csi-hub-plugin with the nvme transport", suiteConfig, reporterConfig)
	counts.Check(t, "csi-sanity nvme", 2, allowedSkips)
	// Stop the driver first so nothing races with the clean-up checks.
	d.stop()
	assertClean(t, base)
}
