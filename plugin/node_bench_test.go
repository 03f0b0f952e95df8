package plugin

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

// BenchmarkNodeStagePublish measures what a pod start waits for on the node:
// NodeStageVolume (losetup, blkid, mkfs.ext4 of a blank 1 GiB volume, mount)
// plus NodePublishVolume (bind mount). Teardown is not timed.
//
//	go test ./plugin/ -run '^$' -bench BenchmarkNodeStagePublish -benchtime 20x
func BenchmarkNodeStagePublish(b *testing.B) {
	requireRootNode(b)
	// Keep the figures readable: the per-call info logs would drown them.
	testutil.CaptureKlog(b, 0)
	e := newNodeEnv(b)
	vc := mountCap("ext4", snw)
	var stage, publish time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		id := fmt.Sprintf("vol-bench-%d", i)
		pc := e.newVolume(id, 1<<30)
		staging, target := e.path(id+"/staging"), e.path(id+"/target")
		b.StartTimer()

		t0 := time.Now()
		if err := e.stage(id, pc, staging, vc, nil); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := e.publish(id, pc, staging, target, vc, false); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		stage += t1.Sub(t0)
		publish += t2.Sub(t1)

		b.StopTimer()
		must(b, "unpublish", e.unpublish(id, target))
		must(b, "unstage", e.unstage(id, staging))
		must(b, "remove backing file", os.Remove(pc[loop.KeyBackingFile]))
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64((stage+publish).Microseconds())/1000/n, "ms/op")
	b.ReportMetric(float64(stage.Microseconds())/1000/n, "stage-ms/op")
	b.ReportMetric(float64(publish.Microseconds())/1000/n, "publish-ms/op")
	e.requireClean()
}
