package plugin

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	testingexec "k8s.io/utils/exec/testing"
)

// Error paths of the node service on a fake Mounter and initiator: no root,
// no loop device, no real mount. Each case checks the gRPC code, that the
// message names what failed, the exact calls made, and what is left behind.
// The happy paths and real tools stay in the root tests (node_roundtrip_test.go).

// errCase is one error path: setup scripts the fakes, call runs the RPC (or
// step), after checks what the failure left behind.
type errCase struct {
	name           string
	setup          func(f *fakeNode)
	call           func(f *fakeNode) error
	code           string
	words          []string // in the message, paths relative to the test root
	mounterCalls   []string
	initiatorCalls []string
	after          func(t *testing.T, f *fakeNode)
}

func runErrCases(t *testing.T, cases []errCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeNode(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			f.check(tc.call(f), tc.code, tc.words, tc.mounterCalls, tc.initiatorCalls)
			if tc.after != nil {
				tc.after(t, f)
			}
		})
	}
}

func (f *fakeNode) injectErr(names ...string) {
	for _, n := range names {
		f.m.errs[n] = errInjected
	}
}

// rolledBack: the failed stage detached what it attached and forgot the volume.
func rolledBack(t *testing.T, f *fakeNode) {
	if f.ini.attached || f.loadRecord() != nil {
		t.Errorf("stage left the device attached (%v) or its record behind (%v)", f.ini.attached, f.loadRecord())
	}
	if f.m.isMounted(f.path("staging")) {
		t.Error("stage left the staging path mounted")
	}
}

// keptStaged: the volume is still attached and recorded (a retry can finish).
func keptStaged(t *testing.T, f *fakeNode) {
	if !f.ini.attached || f.loadRecord() == nil {
		t.Errorf("device attached %v, record %v: want both kept", f.ini.attached, f.loadRecord())
	}
}

// NodeStageVolume of a mount volume: nothing stats the device before the
// mounter is asked, so the RPC runs whole on the fakes.
func TestNodeStageMounterErrors(t *testing.T) {
	stage := func(f *fakeNode) error {
		_, err := f.n.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{VolumeId: fakeVol,
			PublishContext: fakePC, StagingTargetPath: f.path("staging"), VolumeCapability: mountCap("ext4", snw)})
		return err
	}
	probed := []string{"IsMountPoint /staging", "IsMountPoint /staging", "GetDiskFormat /dev/fake0"}
	runErrCases(t, []errCase{{
		name:         "IsMountPoint of the staging path fails: nothing attached",
		setup:        func(f *fakeNode) { f.injectErr("IsMountPoint") },
		call:         stage,
		code:         "Internal",
		words:        []string{"staging_target_path /staging"},
		mounterCalls: []string{"IsMountPoint /staging"},
		after:        rolledBack,
	}, {
		name:           "probing the filesystem fails: detached, record removed",
		setup:          func(f *fakeNode) { f.injectErr("GetDiskFormat") },
		call:           stage,
		code:           "Internal",
		words:          []string{"probe filesystem on /dev/fake0"},
		mounterCalls:   probed,
		initiatorCalls: []string{"Attach vol-1", "Detach vol-1"},
		after:          rolledBack,
	}, {
		name:           "format and mount fails: detached, record removed",
		setup:          func(f *fakeNode) { f.injectErr("FormatAndMount") },
		call:           stage,
		code:           "Internal",
		words:          []string{"format and mount /dev/fake0 at /staging"},
		mounterCalls:   slices.Concat(probed, []string{`FormatAndMount /dev/fake0 /staging ext4 "" ""`}),
		initiatorCalls: []string{"Attach vol-1", "Detach vol-1"},
		after:          rolledBack,
	}, {
		// The device was attached before this call (an earlier, interrupted
		// stage): the rollback must leave it and its record to NodeUnstageVolume.
		name:           "format and mount fails on a device attached before: kept",
		setup:          func(f *fakeNode) { f.ini.attached = true; f.injectErr("FormatAndMount") },
		call:           stage,
		code:           "Internal",
		words:          []string{"format and mount /dev/fake0 at /staging"},
		mounterCalls:   slices.Concat(probed, []string{`FormatAndMount /dev/fake0 /staging ext4 "" ""`}),
		initiatorCalls: []string{"Attach vol-1"},
		after:          keptStaged,
	}})
}

func TestNodeUnstageMounterErrors(t *testing.T) {
	unstage := func(f *fakeNode) error {
		_, err := f.n.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: fakeVol, StagingTargetPath: f.path("staging")})
		return err
	}
	runErrCases(t, []errCase{{
		name:         "IsMountPoint of a published target fails: not detached",
		setup:        func(f *fakeNode) { f.staged(false, "target"); f.injectErr("IsMountPoint") },
		call:         unstage,
		code:         "Internal",
		words:        []string{"check target /target"},
		mounterCalls: []string{"IsMountPoint /target"},
		after:        keptStaged,
	}, {
		name:         "unmount of the staging path fails: not detached",
		setup:        func(f *fakeNode) { f.staged(false); f.injectErr("Unmount") },
		call:         unstage,
		code:         "Internal",
		words:        []string{"unmount /staging"},
		mounterCalls: []string{"IsMountPoint /staging", "Unmount /staging"},
		after:        keptStaged,
	}, {
		name:         "no record: IsMountPoint of the staging path fails",
		setup:        func(f *fakeNode) { f.injectErr("IsMountPoint") },
		call:         unstage,
		code:         "Internal",
		words:        []string{"staging_target_path /staging"},
		mounterCalls: []string{"IsMountPoint /staging"},
	}, {
		name:  "no record: unmount of a leftover staging mount fails",
		setup: func(f *fakeNode) { f.m.mounted[f.path("staging")] = true; f.injectErr("Unmount") },
		call:  unstage,
		code:  "Internal",
		words: []string{"unmount /staging"},
		// The first check finds the mount, unmountAll checks again.
		mounterCalls: []string{"IsMountPoint /staging", "IsMountPoint /staging", "Unmount /staging"},
	}})
}

// notRecordedAt: a failed publish did not add target to the record.
func notRecordedAt(target string) func(t *testing.T, f *fakeNode) {
	return func(t *testing.T, f *fakeNode) {
		if _, ok := f.loadRecord().Targets[f.path(target)]; ok {
			t.Errorf("failed publish recorded %s as a target", target)
		}
	}
}

// NodePublishVolume of a raw block volume runs whole on the fakes. For a mount
// volume the RPC first proves the staging path is the device's filesystem
// (stat of the device node and of the mount), which needs a real staged
// device: its bind-mount step, publishMount, is called directly instead.
func TestNodePublishMounterErrors(t *testing.T) {
	publish := func(readOnly bool) func(f *fakeNode) error {
		return func(f *fakeNode) error {
			_, err := f.n.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{VolumeId: fakeVol,
				StagingTargetPath: f.path("staging"), TargetPath: f.path("target"), VolumeCapability: blockCap(snw), Readonly: readOnly})
			return err
		}
	}
	runErrCases(t, []errCase{{
		name:         "IsMountPoint of the target fails",
		setup:        func(f *fakeNode) { f.staged(true); f.injectErr("IsMountPoint") },
		call:         publish(false),
		code:         "Internal",
		words:        []string{"target_path /target"},
		mounterCalls: []string{"IsMountPoint /target"},
		after:        notRecordedAt("target"),
	}, {
		name:         "bind of the device node fails",
		setup:        func(f *fakeNode) { f.staged(true); f.injectErr("Mount") },
		call:         publish(false),
		code:         "Internal",
		words:        []string{"bind /dev/fake0 onto /target"},
		mounterCalls: []string{"IsMountPoint /target", `Mount /dev/fake0 /target "" bind`},
		after:        notRecordedAt("target"),
	}, {
		name:           "read-only bind fails: the read-only device made for it is detached",
		setup:          func(f *fakeNode) { f.staged(true); f.injectErr("Mount") },
		call:           publish(true),
		code:           "Internal",
		words:          []string{"bind /dev/fake-ro onto /target"},
		mounterCalls:   []string{"IsMountPoint /target", `Mount /dev/fake-ro /target "" bind,ro`},
		initiatorCalls: []string{"AttachReadOnly vol-1", "DetachDevice vol-1 /dev/fake-ro"},
		after:          notRecordedAt("target"),
	}, {
		name:  "bind-mount of the staged filesystem fails (publishMount step)",
		setup: func(f *fakeNode) { f.injectErr("Mount") },
		call: func(f *fakeNode) error {
			return f.n.publishMount(fakeVol, f.path("staging"), f.path("target"), true, []string{"noatime"})
		},
		code:         "Internal",
		words:        []string{"bind-mount /staging at /target"},
		mounterCalls: []string{`Mount /staging /target "" bind,ro,noatime`},
	}})
}

// stillPublished: a failed unpublish keeps the target, its record entry and
// (read-only block) its device, so a retry sees what is there.
func stillPublished(t *testing.T, f *fakeNode) {
	if _, err := os.Stat(f.path("target")); err != nil {
		t.Errorf("failed unpublish removed the target: %v", err)
	}
	if _, ok := f.loadRecord().Targets[f.path("target")]; !ok {
		t.Error("failed unpublish dropped the target from the record")
	}
}

func TestNodeUnpublishMounterErrors(t *testing.T) {
	unpublish := func(f *fakeNode) error {
		_, err := f.n.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: fakeVol, TargetPath: f.path("target")})
		return err
	}
	runErrCases(t, []errCase{{
		name:         "IsMountPoint of the target fails",
		setup:        func(f *fakeNode) { f.staged(false, "target"); f.injectErr("IsMountPoint") },
		call:         unpublish,
		code:         "Internal",
		words:        []string{"unmount /target"},
		mounterCalls: []string{"IsMountPoint /target"},
		after:        stillPublished,
	}, {
		name:         "unmount of the target fails",
		setup:        func(f *fakeNode) { f.staged(false, "target"); f.injectErr("Unmount") },
		call:         unpublish,
		code:         "Internal",
		words:        []string{"unmount /target"},
		mounterCalls: []string{"IsMountPoint /target", "Unmount /target"},
		after:        stillPublished,
	}, {
		// DetachDevice must not run while the device may still be bound there.
		name: "unmount of a read-only block target fails: its device stays attached",
		setup: func(f *fakeNode) {
			rec := f.staged(true, "target")
			rec.Targets[f.path("target")] = publishedTarget{ReadOnly: true, Device: fakeRODevice}
			if err := f.n.records.save(rec); err != nil {
				f.t.Fatal(err)
			}
			f.injectErr("Unmount")
		},
		call:         unpublish,
		code:         "Internal",
		words:        []string{"unmount /target"},
		mounterCalls: []string{"IsMountPoint /target", "Unmount /target"},
		after:        stillPublished,
	}})
}

// NodeExpandVolume reads the device's size from sysfs by its device number
// after the rescan, which needs a real block device; the grow step it ends
// with (growFilesystem, once needsGrow said yes) is called directly.
func TestNodeGrowMounterErrors(t *testing.T) {
	grow := func(fsType string) func(f *fakeNode) error {
		return func(f *fakeNode) error {
			rec := f.loadRecord()
			rec.FsType = fsType
			return f.n.grow(rec)
		}
	}
	stagingMounted := func(want bool) func(t *testing.T, f *fakeNode) {
		return func(t *testing.T, f *fakeNode) {
			if got := f.m.isMounted(f.path("staging")); got != want {
				t.Errorf("staging path mounted: %v, want %v", got, want)
			}
		}
	}
	unmount := []string{"Resize /dev/fake0 /staging", "IsMountPoint /staging", "Unmount /staging"}
	// unmountAll checks once more that nothing is left mounted.
	offline := func(more ...string) []string {
		return slices.Concat(unmount, []string{"IsMountPoint /staging", "Command e2fsck -f -p /dev/fake0"}, more)
	}
	remount := `Mount /dev/fake0 /staging ext4 ""`
	runErrCases(t, []errCase{{
		name:         "xfs online grow fails: no offline fallback",
		setup:        func(f *fakeNode) { f.staged(false); f.injectErr("Resize") },
		call:         grow("xfs"),
		code:         "Internal",
		words:        []string{"grow xfs filesystem"},
		mounterCalls: []string{"Resize /dev/fake0 /staging"},
		after:        stagingMounted(true),
	}, {
		name:         "ext4 online grow fails while published: the pod's mount is left alone",
		setup:        func(f *fakeNode) { f.staged(false, "target"); f.injectErr("Resize") },
		call:         grow("ext4"),
		code:         "FailedPrecondition",
		words:        []string{"cannot be grown online", "published at /target"},
		mounterCalls: []string{"Resize /dev/fake0 /staging", "IsMountPoint /target"},
		after:        stagingMounted(true),
	}, {
		name:         "offline grow: unmount of the staging path fails",
		setup:        func(f *fakeNode) { f.staged(false); f.injectErr("Resize", "Unmount") },
		call:         grow("ext4"),
		code:         "Internal",
		words:        []string{"unmount /staging for offline grow"},
		mounterCalls: unmount,
		after:        stagingMounted(true),
	}, {
		name:         "offline grow: e2fsck fails; the staging path is mounted again",
		setup:        func(f *fakeNode) { f.staged(false); f.injectErr("Resize", "e2fsck") },
		call:         grow("ext4"),
		code:         "Internal",
		words:        []string{"e2fsck /dev/fake0"},
		mounterCalls: offline(remount),
		after:        stagingMounted(true),
	}, {
		name:         "offline grow: resize2fs fails; the staging path is mounted again",
		setup:        func(f *fakeNode) { f.staged(false); f.injectErr("Resize", "resize2fs") },
		call:         grow("ext4"),
		code:         "Internal",
		words:        []string{"resize2fs /dev/fake0"},
		mounterCalls: offline("Command resize2fs /dev/fake0", remount),
		after:        stagingMounted(true),
	}, {
		// e2fsck exit 1 (errors corrected) is success: resize2fs runs.
		name: "offline grow: mounting again fails after e2fsck corrected errors",
		setup: func(f *fakeNode) {
			f.staged(false)
			f.injectErr("Resize", "Mount")
			f.m.errs["e2fsck"] = testingexec.FakeExitError{Status: 1}
		},
		call:         grow("ext4"),
		code:         "Internal",
		words:        []string{"mount /staging again after offline grow"},
		mounterCalls: offline("Command resize2fs /dev/fake0", remount),
		after:        stagingMounted(false),
	}})
}
