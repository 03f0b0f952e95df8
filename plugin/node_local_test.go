package plugin_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/plugin/plugintest"
)

// requireLoop skips, loudly, where real loop devices and mounts are impossible.
func requireLoop(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING: node tests need root for real loop devices and mounts; run them as root (sudo go test ./plugin/)")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "blkid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install util-linux/e2fsprogs (hack/install-deps.sh)", tool)
		}
	}
}

// loopDevicesOf lists `losetup -a` lines naming a file below dir.
func loopDevicesOf(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("losetup", "-a").CombinedOutput()
	if err != nil {
		t.Fatalf("losetup -a: %v: %s", err, out)
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, dir) {
			found = append(found, line)
		}
	}
	return found
}

// mountsBelow lists mount points of /proc/mounts below dir.
func mountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	raw, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && strings.HasPrefix(f[1], dir) {
			out = append(out, f[1])
		}
	}
	return out
}

// With CSIDriver attachRequired: false (csi-hub --node-deployment, one loop
// pool per node) there is no ControllerPublishVolume: the kubelet stages with
// an empty publish_context. A node plugin serving its own pool
// (--node-local-pool) finds the volume's backing file there and stages it with
// a real loop device and ext4; the data survives unstage and a second stage,
// and unstage leaves no mount or loop device. A volume of another node's pool,
// or a deleted one, is NotFound naming the volume and the node. (A node
// without a local pool still refuses an empty publish_context:
// TestNodeBadInput's "stage without publish_context".)
func TestNodeStageFromLocalPool(t *testing.T) {
	requireLoop(t)
	t.Parallel() // two drivers of its own, each on its own pool
	ctx := t.Context()
	a := plugintest.Start(t, plugintest.Options{NodeID: "node-a", LocalNode: true})
	b := plugintest.Start(t, plugintest.Options{NodeID: "node-b", LocalNode: true})
	t.Cleanup(func() {
		// Whatever a failed test left: unmount, then free the loop devices.
		for _, dir := range []string{a.PoolDir, b.PoolDir} {
			for _, m := range mountsBelow(t, filepath.Dir(dir)) {
				_ = exec.Command("umount", "-l", m).Run()
			}
			for _, l := range loopDevicesOf(t, dir) {
				_ = exec.Command("losetup", "-d", strings.TrimSuffix(strings.Fields(l)[0], ":")).Run()
			}
		}
	})
	vol := mustCreate(t, b.ControllerClient(), createReq("local-b", 64*mib, nil))
	id := vol.GetVolumeId()
	work := t.TempDir()
	staging, target := filepath.Join(work, "staging"), filepath.Join(work, "pods", "target")
	vc := mountCap()
	stage := func(d *plugintest.Driver) error {
		_, err := d.NodeClient().NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging,
			VolumeCapability: vc, VolumeContext: vol.GetVolumeContext()})
		return err
	}
	publish := func(d *plugintest.Driver) error {
		_, err := d.NodeClient().NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging,
			TargetPath: target, VolumeCapability: vc, VolumeContext: vol.GetVolumeContext()})
		return err
	}
	down := func(d *plugintest.Driver) {
		t.Helper()
		if _, err := d.NodeClient().NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatalf("NodeUnpublishVolume: %v", err)
		}
		if _, err := d.NodeClient().NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Fatalf("NodeUnstageVolume: %v", err)
		}
		if m := mountsBelow(t, work); len(m) > 0 {
			t.Errorf("after unstage, mounts left: %v", m)
		}
		if l := loopDevicesOf(t, b.PoolDir); len(l) > 0 {
			t.Errorf("after unstage, loop devices of node b's pool left: %v", l)
		}
	}

	// Node A's pool does not hold the volume.
	err := stage(a)
	if st, _ := status.FromError(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), id) || !strings.Contains(st.Message(), "node-a") {
		t.Errorf("NodeStageVolume of node b's volume on node a: %v, want NotFound naming %s and node-a", err, id)
	}

	data := []byte("written on node b through its own pool\n")
	if err := stage(b); err != nil {
		t.Fatalf("NodeStageVolume with an empty publish_context on node b: %v", err)
	}
	if err := publish(b); err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	if l := loopDevicesOf(t, b.PoolDir); len(l) != 1 || !strings.Contains(l[0], filepath.Join(b.PoolDir, id+".img")) {
		t.Errorf("losetup -a for node b's pool: %v, want one device backed by %s.img", l, id)
	}
	if err := os.WriteFile(filepath.Join(target, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	down(b)

	if err := stage(b); err != nil {
		t.Fatalf("second NodeStageVolume: %v", err)
	}
	if err := publish(b); err != nil {
		t.Fatalf("second NodePublishVolume: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "data")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("after restaging, the file holds %q, %v; want %q", got, err, data)
	}
	down(b)

	// The controller recorded no attachment: nothing would ever unpublish it.
	if resp, err := b.ControllerClient().ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	} else if nodes := resp.GetStatus().GetPublishedNodeIds(); len(nodes) != 0 {
		t.Errorf("published nodes %v after node-local stages, want none", nodes)
	}
	// The volume is deletable afterwards.
	if _, err := b.ControllerClient().DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Errorf("DeleteVolume: %v", err)
	}
	err = stage(b)
	if st, _ := status.FromError(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), "node-b") {
		t.Errorf("NodeStageVolume of a deleted volume: %v, want NotFound naming node-b", err)
	}
}
