package plugin_test

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/csi-hub/csi-hub/plugin/plugintest"
)

// TestBadInput sends each malformed request and checks the gRPC code and that
// the message names the offending field.
func TestBadInput(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc := d.ControllerClient()
	ctx := context.Background()
	vol := mustCreate(t, cc, createReq("existing", 4*mib, nil))
	vid := vol.GetVolumeId()

	noMode := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}
	noType := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	multi := blockCap()
	multi.AccessMode.Mode = csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	badFs := mountCap()
	badFs.GetMount().FsType = "ntfs"
	withCaps := func(caps ...*csi.VolumeCapability) *csi.CreateVolumeRequest {
		r := createReq("new", 4*mib, nil)
		r.VolumeCapabilities = caps
		return r
	}
	withParams := func(p map[string]string) *csi.CreateVolumeRequest { return createReq("new", 4*mib, p) }
	withRange := func(req, lim int64) *csi.CreateVolumeRequest {
		r := createReq("new", 0, nil)
		r.CapacityRange = &csi.CapacityRange{RequiredBytes: req, LimitBytes: lim}
		return r
	}
	fromSnap := createReq("new", 4*mib, nil)
	fromSnap.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snap-00000000deadbeef"}}}
	fromVol := createReq("new", 4*mib, nil)
	fromVol.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "vol-00000000deadbeef"}}}
	smallerThanSource := createReq("new", 2*mib, nil)
	smallerThanSource.CapacityRange.LimitBytes = 2 * mib
	smallerThanSource.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: vid}}}
	elsewhere := createReq("new", 4*mib, nil)
	elsewhere.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{"topology.block.csi-hub.io/node": "other"}}}}
	badMutable := createReq("new", 4*mib, nil)
	badMutable.MutableParameters = map[string]string{"blockSize": "4096"}

	cases := []struct {
		name  string
		call  func() error
		code  codes.Code
		field string
	}{
		{"create: no name", func() error { r := createReq("", mib, nil); _, err := cc.CreateVolume(ctx, r); return err }, codes.InvalidArgument, "name"},
		{"create: no capabilities", func() error { _, err := cc.CreateVolume(ctx, withCaps()); return err }, codes.InvalidArgument, "volume_capabilities"},
		{"create: no access type", func() error { _, err := cc.CreateVolume(ctx, withCaps(noType)); return err }, codes.InvalidArgument, "volume_capabilities[0].access_type"},
		{"create: no access mode", func() error { _, err := cc.CreateVolume(ctx, withCaps(noMode)); return err }, codes.InvalidArgument, "volume_capabilities[0].access_mode"},
		{"create: multi-node mode", func() error { _, err := cc.CreateVolume(ctx, withCaps(multi)); return err }, codes.InvalidArgument, "access_mode.mode"},
		{"create: unknown fs", func() error { _, err := cc.CreateVolume(ctx, withCaps(badFs)); return err }, codes.InvalidArgument, "fs_type"},
		{"create: unknown parameter", func() error {
			_, err := cc.CreateVolume(ctx, withParams(map[string]string{"colour": "red"}))
			return err
		}, codes.InvalidArgument, `"colour"`},
		{"create: bad type", func() error {
			_, err := cc.CreateVolume(ctx, withParams(map[string]string{"type": "medium"}))
			return err
		}, codes.InvalidArgument, `parameters["type"]`},
		{"create: bad blockSize", func() error {
			_, err := cc.CreateVolume(ctx, withParams(map[string]string{"blockSize": "3000"}))
			return err
		}, codes.InvalidArgument, `parameters["blockSize"]`},
		{"create: immutable mutable parameter", func() error { _, err := cc.CreateVolume(ctx, badMutable); return err }, codes.InvalidArgument, "mutable_parameters"},
		{"create: negative size", func() error { _, err := cc.CreateVolume(ctx, withRange(-1, 0)); return err }, codes.OutOfRange, "required_bytes"},
		{"create: limit below required", func() error { _, err := cc.CreateVolume(ctx, withRange(8*mib, 4*mib)); return err }, codes.OutOfRange, "limit_bytes"},
		{"create: missing snapshot", func() error { _, err := cc.CreateVolume(ctx, fromSnap); return err }, codes.NotFound, "snapshot_id"},
		{"create: missing source volume", func() error { _, err := cc.CreateVolume(ctx, fromVol); return err }, codes.NotFound, "volume_content_source.volume.volume_id"},
		{"create: limit below source", func() error { _, err := cc.CreateVolume(ctx, smallerThanSource); return err }, codes.OutOfRange, "limit_bytes"},
		{"create: unreachable topology", func() error { _, err := cc.CreateVolume(ctx, elsewhere); return err }, codes.ResourceExhausted, "topology.block.csi-hub.io/node=other"},
		{"delete: no id", func() error { _, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{}); return err }, codes.InvalidArgument, "volume_id"},
		{"publish: no volume", func() error {
			_, err := cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{NodeId: d.NodeID, VolumeCapability: mountCap()})
			return err
		}, codes.InvalidArgument, "volume_id"},
		{"publish: no node", func() error {
			_, err := cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vid, VolumeCapability: mountCap()})
			return err
		}, codes.InvalidArgument, "node_id"},
		{"publish: no capability", func() error {
			_, err := cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vid, NodeId: d.NodeID})
			return err
		}, codes.InvalidArgument, "volume_capability"},
		{"publish: unknown volume", func() error {
			_, err := cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: "vol-00000000deadbeef", NodeId: d.NodeID, VolumeCapability: mountCap()})
			return err
		}, codes.NotFound, "volume_id"},
		{"publish: unknown node", func() error {
			_, err := cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vid, NodeId: "nowhere", VolumeCapability: mountCap()})
			return err
		}, codes.NotFound, "node_id"},
		{"unpublish: no volume", func() error {
			_, err := cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{NodeId: d.NodeID})
			return err
		}, codes.InvalidArgument, "volume_id"},
		{"validate: no volume", func() error {
			_, err := cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeCapabilities: []*csi.VolumeCapability{mountCap()}})
			return err
		}, codes.InvalidArgument, "volume_id"},
		{"validate: no capabilities", func() error {
			_, err := cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vid})
			return err
		}, codes.InvalidArgument, "volume_capabilities"},
		{"validate: unknown volume", func() error {
			_, err := cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "vol-00000000deadbeef", VolumeCapabilities: []*csi.VolumeCapability{mountCap()}})
			return err
		}, codes.NotFound, "volume_id"},
		{"list volumes: bad token", func() error {
			_, err := cc.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: "garbage"})
			return err
		}, codes.Aborted, "starting_token"},
		{"list volumes: negative max", func() error {
			_, err := cc.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: -1})
			return err
		}, codes.InvalidArgument, "max_entries"},
		{"get volume: no id", func() error { _, err := cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{}); return err }, codes.InvalidArgument, "volume_id"},
		{"get volume: unknown", func() error {
			_, err := cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "vol-00000000deadbeef"})
			return err
		}, codes.NotFound, "volume_id"},
		{"volume health: unknown", func() error {
			_, err := cc.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: "vol-00000000deadbeef"})
			return err
		}, codes.NotFound, "volume_id"},
		{"capacity: unknown parameter", func() error {
			_, err := cc.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"colour": "red"}})
			return err
		}, codes.InvalidArgument, `"colour"`},
		{"snapshot: no name", func() error {
			_, err := cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: vid})
			return err
		}, codes.InvalidArgument, "name"},
		{"snapshot: no source", func() error {
			_, err := cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s"})
			return err
		}, codes.InvalidArgument, "source_volume_id"},
		{"snapshot: unknown source", func() error {
			_, err := cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: "vol-00000000deadbeef"})
			return err
		}, codes.NotFound, "source_volume_id"},
		{"snapshot: unknown parameter", func() error {
			_, err := cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: vid, Parameters: map[string]string{"fast": "yes"}})
			return err
		}, codes.InvalidArgument, `"fast"`},
		{"delete snapshot: no id", func() error { _, err := cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{}); return err }, codes.InvalidArgument, "snapshot_id"},
		{"get snapshot: no id", func() error { _, err := cc.GetSnapshot(ctx, &csi.GetSnapshotRequest{}); return err }, codes.InvalidArgument, "snapshot_id"},
		{"get snapshot: unknown", func() error {
			_, err := cc.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: "snap-00000000deadbeef"})
			return err
		}, codes.NotFound, "snapshot_id"},
		{"list snapshots: bad token", func() error {
			_, err := cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: "vol-0000000000000000"})
			return err
		}, codes.Aborted, "starting_token"},
		{"expand: no id", func() error {
			_, err := cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{CapacityRange: &csi.CapacityRange{RequiredBytes: 8 * mib}})
			return err
		}, codes.InvalidArgument, "volume_id"},
		{"expand: no range", func() error {
			_, err := cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: vid})
			return err
		}, codes.InvalidArgument, "capacity_range"},
		{"expand: unknown volume", func() error {
			_, err := cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: "vol-00000000deadbeef", CapacityRange: &csi.CapacityRange{RequiredBytes: 8 * mib}})
			return err
		}, codes.NotFound, "volume_id"},
		{"expand: limit below current size", func() error {
			_, err := cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: vid, CapacityRange: &csi.CapacityRange{RequiredBytes: mib, LimitBytes: 2 * mib}})
			return err
		}, codes.OutOfRange, "limit_bytes"},
		{"modify: no id", func() error {
			_, err := cc.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{MutableParameters: map[string]string{"tier": "x"}})
			return err
		}, codes.InvalidArgument, "volume_id"},
		// csi-sanity's default invocation sends no mutable parameters: the
		// volume lookup must come first (NotFound), as in upstream hostpath.
		{"modify: unknown volume, no parameters", func() error {
			_, err := cc.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: "vol-00000000deadbeef"})
			return err
		}, codes.NotFound, "volume_id"},
		{"modify: unknown key", func() error {
			_, err := cc.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: vid, MutableParameters: map[string]string{"iops": "9000"}})
			return err
		}, codes.InvalidArgument, `"iops"`},
		{"modify: bad type", func() error {
			_, err := cc.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: vid, MutableParameters: map[string]string{"type": "fat"}})
			return err
		}, codes.InvalidArgument, `mutable_parameters["type"]`},
		{"modify: unknown volume", func() error {
			_, err := cc.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: "vol-00000000deadbeef", MutableParameters: map[string]string{"tier": "x"}})
			return err
		}, codes.NotFound, "volume_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code, tc.field) })
	}
	// None of the refused creates may have left a volume behind.
	list, err := cc.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil || len(list.GetEntries()) != 1 {
		t.Fatalf("volumes after bad input: %v %v", list, err)
	}
}

// TestModifyEmptyParametersIsNoOp: an empty mutable_parameters (csi-sanity's
// default invocation) succeeds on an existing volume and changes nothing.
func TestModifyEmptyParametersIsNoOp(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc := d.ControllerClient()
	ctx := context.Background()
	vol := mustCreate(t, cc, createReq("existing", 4*mib, map[string]string{"tier": "gold"}))
	for _, params := range []map[string]string{nil, {}} {
		if _, err := cc.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: vol.GetVolumeId(), MutableParameters: params}); err != nil {
			t.Fatalf("modify with mutable_parameters %v: %v", params, err)
		}
	}
	got, err := cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: vol.GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}
	if tier := got.GetVolume().GetVolumeContext()["tier"]; tier != "gold" {
		t.Fatalf("tier after empty modify = %q, want unchanged", tier)
	}
}
