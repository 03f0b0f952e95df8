package plugin

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

// TestNodeBadInput checks every malformed request gets the right code and a
// message naming the offending field. No root needed: nothing reaches the system.
func TestNodeBadInput(t *testing.T) {
	e := newNodeEnv(t)
	n := e.node
	ctx := context.Background()
	staging, target := e.path("staging"), e.path("target")
	pc := e.newVolume("vol-bad", 16<<20)
	good := mountCap("ext4", snw)

	cases := []struct {
		name  string
		call  func() error
		code  codes.Code
		words []string
	}{
		{"stage without volume_id", func() error {
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{StagingTargetPath: staging, VolumeCapability: good, PublishContext: pc})
			return err
		}, codes.InvalidArgument, []string{"volume_id"}},
		{"stage without staging_target_path", func() error {
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "vol-bad", VolumeCapability: good, PublishContext: pc})
			return err
		}, codes.InvalidArgument, []string{"staging_target_path"}},
		{"stage with relative staging_target_path", func() error {
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "vol-bad", StagingTargetPath: "rel/dir", VolumeCapability: good, PublishContext: pc})
			return err
		}, codes.InvalidArgument, []string{"staging_target_path", "absolute"}},
		{"stage without volume_capability", func() error {
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "vol-bad", StagingTargetPath: staging, PublishContext: pc})
			return err
		}, codes.InvalidArgument, []string{"volume_capability"}},
		{"stage without access_mode", func() error {
			vc := mountCap("ext4", snw)
			vc.AccessMode = nil
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "vol-bad", StagingTargetPath: staging, VolumeCapability: vc, PublishContext: pc})
			return err
		}, codes.InvalidArgument, []string{"volume_capability.access_mode"}},
		{"stage with unsupported fs_type", func() error {
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "vol-bad", StagingTargetPath: staging, VolumeCapability: mountCap("ntfs", snw), PublishContext: pc})
			return err
		}, codes.InvalidArgument, []string{"fs_type", "ntfs"}},
		{"stage with multi-node access mode", func() error {
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "vol-bad", StagingTargetPath: staging,
				VolumeCapability: mountCap("ext4", csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER), PublishContext: pc})
			return err
		}, codes.InvalidArgument, []string{"access_mode", "MULTI_NODE_MULTI_WRITER"}},
		{"stage with bad blockSize", func() error {
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "vol-bad", StagingTargetPath: staging, VolumeCapability: good,
				PublishContext: pc, VolumeContext: map[string]string{ParamBlockSize: "3000"}})
			return err
		}, codes.InvalidArgument, []string{"volume_context", ParamBlockSize}},
		{"stage without publish_context", func() error {
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "vol-bad", StagingTargetPath: staging, VolumeCapability: good})
			return err
		}, codes.InvalidArgument, []string{"publish_context", "node-local-pool"}},
		{"publish without volume_id", func() error {
			_, err := n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{TargetPath: target, StagingTargetPath: staging, VolumeCapability: good})
			return err
		}, codes.InvalidArgument, []string{"volume_id"}},
		{"publish without target_path", func() error {
			_, err := n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "vol-bad", StagingTargetPath: staging, VolumeCapability: good})
			return err
		}, codes.InvalidArgument, []string{"target_path"}},
		{"publish without volume_capability", func() error {
			_, err := n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "vol-bad", TargetPath: target, StagingTargetPath: staging})
			return err
		}, codes.InvalidArgument, []string{"volume_capability"}},
		{"publish without staging_target_path", func() error {
			_, err := n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "vol-bad", TargetPath: target, VolumeCapability: good})
			return err
		}, codes.FailedPrecondition, []string{"staging_target_path"}},
		{"publish before stage", func() error {
			_, err := n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "vol-bad", TargetPath: target, StagingTargetPath: staging, VolumeCapability: good, PublishContext: pc})
			return err
		}, codes.FailedPrecondition, []string{"vol-bad", "not staged"}},
		{"unpublish without volume_id", func() error {
			_, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{TargetPath: target})
			return err
		}, codes.InvalidArgument, []string{"volume_id"}},
		{"unpublish without target_path", func() error {
			_, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-bad"})
			return err
		}, codes.InvalidArgument, []string{"target_path"}},
		{"unstage without volume_id", func() error {
			_, err := n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{StagingTargetPath: staging})
			return err
		}, codes.InvalidArgument, []string{"volume_id"}},
		{"unstage without staging_target_path", func() error {
			_, err := n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-bad"})
			return err
		}, codes.InvalidArgument, []string{"staging_target_path"}},
		{"stats without volume_id", func() error {
			_, err := n.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumePath: target})
			return err
		}, codes.InvalidArgument, []string{"volume_id"}},
		{"stats without volume_path", func() error {
			_, err := n.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "vol-bad"})
			return err
		}, codes.InvalidArgument, []string{"volume_path"}},
		{"stats of unknown volume", func() error {
			_, err := n.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "vol-unknown", VolumePath: target})
			return err
		}, codes.NotFound, []string{"vol-unknown"}},
		{"expand without volume_id", func() error {
			_, err := n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumePath: target})
			return err
		}, codes.InvalidArgument, []string{"volume_id"}},
		{"expand without volume_path", func() error {
			_, err := n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "vol-bad"})
			return err
		}, codes.InvalidArgument, []string{"volume_path"}},
		{"expand with inverted capacity_range", func() error {
			_, err := n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "vol-bad", VolumePath: target,
				CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 20, LimitBytes: 1 << 20}})
			return err
		}, codes.InvalidArgument, []string{"capacity_range"}},
		{"expand of unknown volume", func() error {
			_, err := n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "vol-unknown", VolumePath: target})
			return err
		}, codes.NotFound, []string{"vol-unknown"}},
		{"health without volume_id", func() error {
			_, err := n.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{})
			return err
		}, codes.InvalidArgument, []string{"volume_id"}},
		{"health of unknown volume", func() error {
			_, err := n.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: "vol-unknown"})
			return err
		}, codes.NotFound, []string{"vol-unknown"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.name, c.call(), c.code, c.words...) })
	}
}

// TestNodeBusyVolumeIsAborted checks a second operation on a volume that is
// already being worked on is answered Aborted, for every volume RPC.
func TestNodeBusyVolumeIsAborted(t *testing.T) {
	e := newNodeEnv(t)
	n := e.node
	ctx := context.Background()
	pc := e.newVolume("vol-busy", 16<<20)
	release, ok := n.inFlight.Acquire("vol-busy")
	if !ok {
		t.Fatal("could not take the in-flight guard")
	}
	defer release()
	staging, target := e.path("staging"), e.path("target")
	calls := map[string]func() error{
		"stage": func() error {
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "vol-busy", StagingTargetPath: staging, VolumeCapability: mountCap("ext4", snw), PublishContext: pc})
			return err
		},
		"publish": func() error {
			_, err := n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "vol-busy", StagingTargetPath: staging, TargetPath: target, VolumeCapability: mountCap("ext4", snw), PublishContext: pc})
			return err
		},
		"unpublish": func() error {
			_, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-busy", TargetPath: target})
			return err
		},
		"unstage": func() error {
			_, err := n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-busy", StagingTargetPath: staging})
			return err
		},
	}
	for name, call := range calls {
		wantCode(t, name, call(), codes.Aborted, "vol-busy")
	}
}

func TestNodeGetInfoAndCapabilities(t *testing.T) {
	e := newNodeEnv(t)
	info, err := e.node.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	must(t, "NodeGetInfo", err)
	if info.GetNodeId() != "node-1" || info.GetAccessibleTopology().GetSegments()[TopologyNodeKey("hub.csi.test")] != "node-1" {
		t.Errorf("NodeGetInfo = %v; want node-1 and its topology segment", info)
	}
	caps, err := e.node.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	must(t, "NodeGetCapabilities", err)
	have := map[csi.NodeServiceCapability_RPC_Type]bool{}
	for _, c := range caps.GetCapabilities() {
		have[c.GetRpc().GetType()] = true
	}
	for _, want := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME, csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS, csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
	} {
		if !have[want] {
			t.Errorf("capability %s missing", want)
		}
	}
}
