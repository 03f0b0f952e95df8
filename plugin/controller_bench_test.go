package plugin_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
)

// BenchmarkCreateDeleteVolume measures CreateVolume+DeleteVolume pairs over
// gRPC on a unix socket, with a real pool directory and the fsync'd bbolt store.
func BenchmarkCreateDeleteVolume(b *testing.B) {
	for _, typ := range []string{"thin", "thick"} {
		b.Run(typ, func(b *testing.B) {
			testutil.CaptureKlog(b, 0) // the per-call info logs would drown the figures
			d := plugintest.Start(b, plugintest.Options{})
			cc := d.ControllerClient()
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				resp, err := cc.CreateVolume(ctx, createReq(fmt.Sprintf("bench-%d", i), 64*mib, map[string]string{"type": typ}))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: resp.GetVolume().GetVolumeId()}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "volumes/s")
		})
	}
}
