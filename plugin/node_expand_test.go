package plugin

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

// TestNodeExpandGrowsFilesystem grows the backing file (as ControllerExpandVolume
// does), calls NodeExpandVolume and checks with statfs that the mounted
// filesystem really grew, for ext4 and xfs. xfs grows online. ext4 grows online
// only when the process has CAP_SYS_RESOURCE; without it (as on the project's
// CI machines) a published volume is refused with a clear error and the
// volume grows offline once unpublished, the state kubelet expands in
// between stage and publish.
func TestNodeExpandGrowsFilesystem(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	for _, fsType := range []string{"ext4", "xfs"} {
		t.Run(fsType, func(t *testing.T) {
			t.Parallel()
			e := newNodeEnv(t)
			id := "vol-grow-" + fsType
			const before, after = 320 << 20, 640 << 20
			pc := e.newVolume(id, before)
			staging, target := e.path("staging"), e.path("target")
			vc := mountCap(fsType, snw)
			must(t, "stage", e.stage(id, pc, staging, vc, nil))
			must(t, "publish", e.publish(id, pc, staging, target, vc, false))
			must(t, "write", os.WriteFile(target+"/data", []byte("kept"), 0o600))
			small := statfs(t, staging)

			req := &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: target, StagingTargetPath: staging,
				VolumeCapability: vc, CapacityRange: &csi.CapacityRange{RequiredBytes: after}}
			_, err := e.node.NodeExpandVolume(context.Background(), req)
			wantCode(t, "expand before the backing store grew", err, codes.FailedPrecondition, "ControllerExpandVolume")
			must(t, "grow backing file", os.Truncate(pc[loop.KeyBackingFile], after))

			online := fsType == "xfs" || hasCapSysResource(t)
			if !online {
				_, err := e.node.NodeExpandVolume(context.Background(), req)
				wantCode(t, "online ext4 grow without CAP_SYS_RESOURCE", err, codes.FailedPrecondition, "CAP_SYS_RESOURCE", target)
				t.Logf("published ext4 without CAP_SYS_RESOURCE: %v", err)
				must(t, "unpublish", e.unpublish(id, target))
				req.VolumePath = staging
			}
			for range 2 { // idempotent
				resp, err := e.node.NodeExpandVolume(context.Background(), req)
				must(t, "expand", err)
				if resp.GetCapacityBytes() != after {
					t.Errorf("capacity_bytes = %d, want %d", resp.GetCapacityBytes(), after)
				}
			}
			if !online {
				must(t, "publish again", e.publish(id, pc, staging, target, vc, false))
			}
			big := statfs(t, target)
			grownBytes := int64(big.Blocks)*big.Bsize - int64(small.Blocks)*small.Bsize
			t.Logf("%s (online=%v): filesystem %d -> %d bytes", fsType, online, int64(small.Blocks)*small.Bsize, int64(big.Blocks)*big.Bsize)
			if grownBytes < (after-before)*9/10 {
				t.Errorf("filesystem grew by %d bytes, want about %d", grownBytes, after-before)
			}
			if got, err := os.ReadFile(target + "/data"); err != nil || string(got) != "kept" {
				t.Errorf("data after expand = %q, %v", got, err)
			}
			must(t, "unpublish", e.unpublish(id, target))
			must(t, "unstage", e.unstage(id, staging))
			e.requireClean()
		})
	}
}

// TestNodeStageGrowsExpandedVolume: a volume expanded while no node had it
// (ControllerExpandVolume between unstage and stage) comes back from
// NodeStageVolume with its filesystem already at the new size, even for ext4
// without CAP_SYS_RESOURCE; the kubelet's NodeExpandVolume after publish then
// has nothing left to do and succeeds.
func TestNodeStageGrowsExpandedVolume(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	for _, fsType := range []string{"ext4", "xfs"} {
		t.Run(fsType, func(t *testing.T) {
			t.Parallel()
			e := newNodeEnv(t)
			id := "vol-regrow-" + fsType
			const before, after = 320 << 20, 640 << 20
			pc := e.newVolume(id, before)
			staging, target := e.path("staging"), e.path("target")
			vc := mountCap(fsType, snw)
			must(t, "stage", e.stage(id, pc, staging, vc, nil))
			must(t, "write", os.WriteFile(staging+"/data", []byte("kept"), 0o600))
			small := statfs(t, staging)
			must(t, "unstage", e.unstage(id, staging))

			must(t, "grow backing file", os.Truncate(pc[loop.KeyBackingFile], after))
			must(t, "stage again", e.stage(id, pc, staging, vc, nil))
			must(t, "publish", e.publish(id, pc, staging, target, vc, false))
			big := statfs(t, target)
			t.Logf("%s: filesystem %d -> %d bytes across unstage/stage", fsType, int64(small.Blocks)*small.Bsize, int64(big.Blocks)*big.Bsize)
			if grown := int64(big.Blocks)*big.Bsize - int64(small.Blocks)*small.Bsize; grown < (after-before)*9/10 {
				t.Errorf("filesystem grew by %d bytes at stage, want about %d", grown, after-before)
			}
			if got, err := os.ReadFile(target + "/data"); err != nil || string(got) != "kept" {
				t.Errorf("data after regrow = %q, %v", got, err)
			}
			req := &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: target, StagingTargetPath: staging,
				VolumeCapability: vc, CapacityRange: &csi.CapacityRange{RequiredBytes: after}}
			_, err := e.node.NodeExpandVolume(context.Background(), req)
			must(t, "NodeExpandVolume after publish (nothing left to grow)", err)
			must(t, "unpublish", e.unpublish(id, target))
			must(t, "unstage", e.unstage(id, staging))
			e.requireClean()
		})
	}
}

// hasCapSysResource reports whether this process may grow a mounted ext4.
func hasCapSysResource(t *testing.T) bool {
	raw, err := os.ReadFile("/proc/self/status")
	must(t, "read /proc/self/status", err)
	for _, line := range strings.Split(string(raw), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			must(t, "parse CapEff", err)
			return caps&(1<<24) != 0 // CAP_SYS_RESOURCE
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}

// TestNodeExpandBlock checks a raw block volume's device (and a read-only
// device made for a publish) takes the new size.
func TestNodeExpandBlock(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	e := newNodeEnv(t)
	pc := e.newVolume("vol-grow-blk", 32<<20)
	staging, rw, ro := e.path("staging"), e.path("rw"), e.path("ro")
	must(t, "mkdir", os.MkdirAll(staging, 0o750))
	vc := blockCap(snw)
	must(t, "stage", e.stage("vol-grow-blk", pc, staging, vc, nil))
	must(t, "publish rw", e.publish("vol-grow-blk", pc, staging, rw, vc, false))
	must(t, "publish ro", e.publish("vol-grow-blk", pc, staging, ro, vc, true))
	must(t, "grow backing file", os.Truncate(pc[loop.KeyBackingFile], 96<<20))
	resp, err := e.node.NodeExpandVolume(context.Background(), &csi.NodeExpandVolumeRequest{VolumeId: "vol-grow-blk", VolumePath: rw,
		VolumeCapability: vc, CapacityRange: &csi.CapacityRange{RequiredBytes: 96 << 20}})
	must(t, "expand", err)
	if resp.GetCapacityBytes() != 96<<20 {
		t.Errorf("capacity_bytes = %d, want %d", resp.GetCapacityBytes(), 96<<20)
	}
	for _, p := range []string{rw, ro} {
		stats, err := e.node.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: "vol-grow-blk", VolumePath: p})
		must(t, "stats", err)
		if got := stats.GetUsage()[0].GetTotal(); got != 96<<20 {
			t.Errorf("%s: device size after expand = %d, want %d", p, got, 96<<20)
		}
	}
	must(t, "unpublish", e.unpublish("vol-grow-blk", rw))
	must(t, "unpublish", e.unpublish("vol-grow-blk", ro))
	must(t, "unstage", e.unstage("vol-grow-blk", staging))
	e.requireClean()
}

// TestNodeHealthWhenDeviceGoes removes the device under a published volume
// (block: losetup -d; mount: the backing file is deleted) and checks
// NodeGetVolumeHealth says INACCESSIBLE, NodeGetVolumeStats reports the volume
// abnormal, and unpublish/unstage still clean up.
func TestNodeHealthWhenDeviceGoes(t *testing.T) {
	requireRootNode(t)
	t.Parallel()
	e := newNodeEnv(t)
	ctx := context.Background()
	type vol struct {
		id     string
		vc     *csi.VolumeCapability
		remove func(pc map[string]string, dev string)
	}
	vols := []vol{
		{"vol-h-blk", blockCap(snw), func(_ map[string]string, dev string) {
			if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
				t.Fatalf("losetup -d %s: %v: %s", dev, err, out)
			}
		}},
		{"vol-h-fs", mountCap("ext4", snw), func(pc map[string]string, _ string) {
			must(t, "delete backing file", os.Remove(pc[loop.KeyBackingFile]))
		}},
	}
	for _, v := range vols {
		pc := e.newVolume(v.id, 64<<20)
		staging, target := e.path(v.id+"/staging"), e.path(v.id+"/target")
		must(t, "mkdir", os.MkdirAll(staging, 0o750))
		must(t, "stage", e.stage(v.id, pc, staging, v.vc, nil))
		must(t, "publish", e.publish(v.id, pc, staging, target, v.vc, false))

		h, err := e.node.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: v.id, VolumePublishPath: target, StagingTargetPath: staging})
		must(t, "health", err)
		if s := h.GetVolumeHealth().GetHealthStatuses(); len(s) != 0 || h.GetVolumeHealth().GetVolumeId() != v.id {
			t.Fatalf("%s: healthy volume reports %v", v.id, h.GetVolumeHealth())
		}
		rec, err := e.node.records.load(v.id)
		must(t, "record", err)

		v.remove(pc, rec.Device)

		h, err = e.node.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: v.id, VolumePublishPath: target})
		must(t, "health after the device went", err)
		s := h.GetVolumeHealth().GetHealthStatuses()
		if len(s) != 1 || s[0].GetStatus() != csi.VolumeHealthErrorType_INACCESSIBLE || s[0].GetReason() != "DeviceGone" {
			t.Errorf("%s: health after the device went = %v; want INACCESSIBLE DeviceGone", v.id, s)
		}
		_, err = e.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: v.id, VolumePath: target})
		wantCode(t, v.id+": stats after the device went", err, codes.FailedPrecondition, "abnormal", rec.Device)

		must(t, "unpublish", e.unpublish(v.id, target))
		must(t, "unstage", e.unstage(v.id, staging))
	}
	e.requireClean()
	if out, _ := exec.Command("losetup", "-a").Output(); strings.Contains(string(out), e.root) {
		t.Errorf("losetup -a still lists a device of the test: %s", out)
	}
}
