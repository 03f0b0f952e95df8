//go:build vmguest

package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	. "github.com/onsi/gomega"
)

// allowedSkips are the skip messages of specs for capabilities the plugin
// does not claim; any other skip fails the test.
var allowedSkips = []string{
	"NodeGetStorageHealth not supported",
	"GroupControllerService not supported",
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

	counts := map[string]map[types.SpecState]int{}
	skips := map[string]map[string]int{}
	ReportAfterSuite("csi-sanity counts", func(r Report) {
		for _, s := range r.SpecReports {
			if s.LeafNodeType != types.NodeTypeIt || len(s.ContainerHierarchyTexts) == 0 {
				continue
			}
			at := s.ContainerHierarchyTexts[0]
			if counts[at] == nil {
				counts[at], skips[at] = map[types.SpecState]int{}, map[string]int{}
			}
			counts[at][s.State]++
			if s.State == types.SpecStateSkipped {
				skips[at][s.Failure.Message]++
			}
		}
	})
	RegisterFailHandler(Fail)
	suiteConfig, reporterConfig := GinkgoConfiguration()
	reporterConfig.Succinct = true
	reporterConfig.NoColor = true // the serial console log is read as text
	RunSpecs(t, "csi-sanity against csi-hub-plugin with the nvme transport", suiteConfig, reporterConfig)

	if len(counts) != 2 {
		t.Errorf("specs ran for %d access types, want 2", len(counts))
	}
	for _, at := range sortedKeys(counts) {
		c := counts[at]
		t.Logf("csi-sanity nvme %s: %d passed, %d failed, %d skipped, %d panicked", at,
			c[types.SpecStatePassed], c[types.SpecStateFailed], c[types.SpecStateSkipped], c[types.SpecStatePanicked])
		for _, msg := range sortedKeys(skips[at]) {
			t.Logf("  skipped %dx: %s", skips[at][msg], msg)
			if !allowedSkip(msg) {
				t.Errorf("%s: spec skipped for a reason other than an unclaimed capability: %q", at, msg)
			}
		}
		if c[types.SpecStatePassed] == 0 {
			t.Errorf("%s: no spec passed", at)
		}
	}
	// Stop the driver first so nothing races with the clean-up checks.
	d.stop()
	assertClean(t, base)
}

func allowedSkip(msg string) bool {
	for _, a := range allowedSkips {
		if strings.Contains(msg, a) {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
