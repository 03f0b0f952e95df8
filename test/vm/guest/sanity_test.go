//go:build vmguest

package guest

import (
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
)

// TestSanity runs csi-sanity against the plugin wired with the nvme transport:
// every volume it stages is a real NVMe/TCP connection to the VM's own nvmet.
func TestSanity(t *testing.T) {
	requireVM(t)
	base := "/tmp/sanity"
	d := startDriver(t, base)
	cfg := sanity.NewTestConfig()
	cfg.Address = d.endpoint
	cfg.TargetPath = base + "/target"
	cfg.StagingPath = base + "/staging"
	cfg.TestVolumeSize = 16 * mib
	cfg.TestVolumeExpandSize = 32 * mib
	cfg.IdempotentCount = 3
	sanity.Test(t, cfg)
	// Stop the driver first so nothing races with the clean-up checks.
	d.stop()
	assertClean(t, base)
}
