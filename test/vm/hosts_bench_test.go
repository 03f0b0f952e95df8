package vm

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-hub/csi-hub/test/vm/agentapi"
)

// ioBench runs the agent's O_DIRECT I/O benchmark on path in h.
func (h *vmHost) ioBench(t testing.TB, path string, mib int, random time.Duration) agentapi.IOBenchResult {
	t.Helper()
	var r agentapi.IOBenchResult
	h.post(t, "/iobench", agentapi.IOBenchRequest{Path: path, MiB: mib, RandomSeconds: random.Seconds()}, &r)
	if r.Err != "" {
		t.Fatalf("%s: iobench on %s: %s", h.name, path, r.Err)
	}
	return r
}

// createThick makes a fully allocated volume, so neither side of the
// benchmark pays for ext4 allocating its blocks.
func (b *bed) createThick(t testing.TB, name string, size int64, vc *csi.VolumeCapability) string {
	t.Helper()
	resp, err := b.storage.cc.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: name,
		VolumeCapabilities: []*csi.VolumeCapability{vc}, CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		Parameters:                map[string]string{"type": "thick"},
		AccessibilityRequirements: &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{"topology.block.csi-hub.io/zone": zone}}}}})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	return resp.GetVolume().GetVolumeId()
}

// BenchmarkHostsThroughput is issue 18's figures: O_DIRECT sequential write
// and read (1 MiB blocks) and 4 KiB random reads (queue depth 1) on a block
// volume over NVMe/TCP between VMs (created on the storage host, published
// to node 1, staged and published as a block device there, I/O on node 1)
// beside the same on the storage host itself, through a direct-I/O loop
// device on the backing file of a second volume of the same size on the
// same pool. The VMs are qemu TCG, so the absolute figures are slow; the
// ratio is the result. make nvme-bench runs it once (-benchtime 1x); each
// further iteration repeats both sides and the figures are their means.
func BenchmarkHostsThroughput(b *testing.B) {
	const (
		sizeMiB = 128
		random  = 10 * time.Second
	)
	bd := newBed(b, 1)
	n1 := bd.nodes[0]
	vc := blockCapability(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	overID := bd.createThick(b, "bench-nvme", sizeMiB*mib, vc)
	localID := bd.createThick(b, "bench-local", sizeMiB*mib, vc)
	a := bd.attach(b, overID, n1, vc, "bench/dev")
	dev := strings.TrimSpace(n1.sh(b, "ls /sys/block | grep -E '^nvme[0-9]+n[0-9]+$' | head -n1"))
	buffered := strings.TrimSpace(bd.storage.sh(b, "cat /sys/kernel/config/nvmet/subsystems/*/namespaces/*/buffered_io | sort -u | tr '\\n' ' '"))
	backing := strings.TrimSpace(bd.storage.sh(b, "find /var/lib/csi-hub/pool -name '"+localID+".img'"))
	if backing == "" {
		b.Fatalf("no backing file %s.img under the storage host's pool", localID)
	}
	// util-linux's losetup (busybox's sh would run its own applet, which
	// has no --direct-io).
	loop := strings.TrimSpace(bd.storage.sh(b, "/usr/sbin/losetup --direct-io=on -f --show "+backing))
	dio := strings.TrimSpace(bd.storage.sh(b, "cat /sys/block/"+strings.TrimPrefix(loop, "/dev/")+"/loop/dio"))

	var over, local agentapi.IOBenchResult
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o := n1.ioBench(b, a.target, sizeMiB, random)
		l := bd.storage.ioBench(b, loop, sizeMiB, random)
		over.WriteMiBps += o.WriteMiBps / float64(b.N)
		over.ReadMiBps += o.ReadMiBps / float64(b.N)
		over.RandomIOPS += o.RandomIOPS / float64(b.N)
		local.WriteMiBps += l.WriteMiBps / float64(b.N)
		local.ReadMiBps += l.ReadMiBps / float64(b.N)
		local.RandomIOPS += l.RandomIOPS / float64(b.N)
		over.RandomReads += o.RandomReads
		local.RandomReads += l.RandomReads
	}
	b.StopTimer()

	b.ReportMetric(over.WriteMiBps, "nvme-seqwrite-MiB/s")
	b.ReportMetric(over.ReadMiBps, "nvme-seqread-MiB/s")
	b.ReportMetric(over.RandomIOPS, "nvme-randread-IOPS")
	b.ReportMetric(local.WriteMiBps, "loop-seqwrite-MiB/s")
	b.ReportMetric(local.ReadMiBps, "loop-seqread-MiB/s")
	b.ReportMetric(local.RandomIOPS, "loop-randread-IOPS")
	b.ReportMetric(over.WriteMiBps/local.WriteMiBps, "ratio-seqwrite")
	b.ReportMetric(over.ReadMiBps/local.ReadMiBps, "ratio-seqread")
	b.ReportMetric(over.RandomIOPS/local.RandomIOPS, "ratio-randread")
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "%d MiB thick volumes, O_DIRECT, queue depth 1, %d iteration(s), qemu TCG\n", sizeMiB, b.N)
	fmt.Fprintf(&tbl, "  nvme: node1 %s (/dev/%s) over NVMe/TCP from the storage host (nvmet buffered_io %s)\n", a.target, dev, buffered)
	fmt.Fprintf(&tbl, "  loop: storage host %s (dio %s) on %s\n", loop, dio, backing)
	fmt.Fprintf(&tbl, "  %-28s %15s %15s %7s\n", "", "NVMe/TCP", "loop (local)", "ratio")
	row := func(name, unit string, o, l float64) {
		fmt.Fprintf(&tbl, "  %-28s %9.1f %-5s %9.1f %-5s %7.2f\n", name, o, unit, l, unit, o/l)
	}
	row("sequential write, 1 MiB", "MiB/s", over.WriteMiBps, local.WriteMiBps)
	row("sequential read, 1 MiB", "MiB/s", over.ReadMiBps, local.ReadMiBps)
	row("random read, 4 KiB", "IOPS", over.RandomIOPS, local.RandomIOPS)
	fmt.Fprintf(&tbl, "  (random reads: %d over NVMe/TCP, %d local, %v each)", over.RandomReads, local.RandomReads, random)
	b.Logf("NVMe/TCP between VMs vs the storage host's loop device:\n%s", tbl.String())

	bd.storage.sh(b, "/usr/sbin/losetup -d "+loop)
	bd.detach(b, a)
	bd.deleteVolume(b, overID)
	bd.deleteVolume(b, localID)
}
