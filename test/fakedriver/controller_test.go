package fakedriver

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

func TestCreateVolumeIdempotentByName(t *testing.T) {
	d, c := startDriver(t, Options{})
	req := createReq("pvc-1", 10*mib)
	req.Parameters = map[string]string{"type": "fast"}
	first := mustCreate(t, c, req)
	again := mustCreate(t, c, req)
	if first.GetVolumeId() != again.GetVolumeId() {
		t.Fatalf("same name gave two volumes: %s and %s", first.GetVolumeId(), again.GetVolumeId())
	}
	if n := len(d.Volumes()); n != 1 {
		t.Fatalf("backend has %d volumes, want 1", n)
	}

	bigger := createReq("pvc-1", 20*mib)
	bigger.Parameters = req.Parameters
	_, err := c.ctrl.CreateVolume(ctx(t), bigger)
	wantCode(t, err, codes.AlreadyExists, "pvc-1", "capacity_range")

	otherParams := createReq("pvc-1", 10*mib)
	otherParams.Parameters = map[string]string{"type": "slow"}
	_, err = c.ctrl.CreateVolume(ctx(t), otherParams)
	wantCode(t, err, codes.AlreadyExists, "parameters")

	if n := len(d.Volumes()); n != 1 {
		t.Fatalf("failed CreateVolume calls changed the backend: %d volumes", n)
	}
}

func TestCreateVolumeValidation(t *testing.T) {
	_, c := startDriver(t, Options{})
	noMode := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}
	badFs := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "zfs-ish"}},
		AccessMode: rwo.AccessMode,
	}
	cases := []struct {
		name    string
		req     *csi.CreateVolumeRequest
		code    codes.Code
		mention string
	}{
		{"no name", &csi.CreateVolumeRequest{VolumeCapabilities: []*csi.VolumeCapability{rwo}}, codes.InvalidArgument, "name"},
		{"no capabilities", &csi.CreateVolumeRequest{Name: "v"}, codes.InvalidArgument, "volume_capabilities"},
		{"no access mode", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{noMode}}, codes.InvalidArgument, "volume_capabilities[0].access_mode"},
		{"no access type", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{{AccessMode: rwo.AccessMode}}}, codes.InvalidArgument, "access_type"},
		{"bad fstype", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{badFs}}, codes.InvalidArgument, "fs_type"},
		{"RWOP without capability", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{
			mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)}}, codes.InvalidArgument, "SINGLE_NODE_MULTI_WRITER"},
		{"required over limit", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{rwo},
			CapacityRange: &csi.CapacityRange{RequiredBytes: 10 * mib, LimitBytes: 5 * mib}}, codes.InvalidArgument, "limit_bytes"},
		{"negative", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{rwo},
			CapacityRange: &csi.CapacityRange{RequiredBytes: -1}}, codes.InvalidArgument, "required_bytes"},
		{"no whole MiB in range", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{rwo},
			CapacityRange: &csi.CapacityRange{RequiredBytes: mib + 1, LimitBytes: mib + 100}}, codes.OutOfRange, "capacity_range"},
		{"unknown mutable key", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{rwo},
			MutableParameters: map[string]string{"colour": "red"}}, codes.InvalidArgument, "colour"},
		{"empty content source", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{rwo},
			VolumeContentSource: &csi.VolumeContentSource{}}, codes.InvalidArgument, "volume_content_source"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.ctrl.CreateVolume(ctx(t), tc.req)
			wantCode(t, err, tc.code, tc.mention)
		})
	}
}

func TestCreateVolumeCapacity(t *testing.T) {
	d, c := startDriver(t, Options{TotalCapacityBytes: 100 * mib, DefaultVolumeBytes: 8 * mib})
	cases := []struct {
		name      string
		rng       *csi.CapacityRange
		wantBytes int64
	}{
		{"one byte rounds up to a MiB", &csi.CapacityRange{RequiredBytes: 1}, mib},
		{"no range gets the default", nil, 8 * mib},
		{"limit below default caps it", &csi.CapacityRange{LimitBytes: 5*mib + 3}, 5 * mib},
		{"exact", &csi.CapacityRange{RequiredBytes: 3 * mib, LimitBytes: 3 * mib}, 3 * mib},
	}
	var used int64
	for _, tc := range cases {
		v := mustCreate(t, c, &csi.CreateVolumeRequest{Name: tc.name, CapacityRange: tc.rng, VolumeCapabilities: []*csi.VolumeCapability{rwo}})
		if v.GetCapacityBytes() != tc.wantBytes {
			t.Errorf("%s: capacity %d, want %d", tc.name, v.GetCapacityBytes(), tc.wantBytes)
		}
		used += v.GetCapacityBytes()
	}
	capResp, err := c.ctrl.GetCapacity(ctx(t), &csi.GetCapacityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := capResp.GetAvailableCapacity(), 100*mib-used; got != want {
		t.Fatalf("GetCapacity %d, want %d", got, want)
	}
	_, err = c.ctrl.CreateVolume(ctx(t), createReq("too-big", 100*mib))
	wantCode(t, err, codes.ResourceExhausted, "capacity")
	if _, ok := d.VolumeByName("too-big"); ok {
		t.Fatal("a volume that did not fit was created")
	}
}

func TestCreateVolumeFromContentSource(t *testing.T) {
	d, c := startDriver(t, Options{})
	src := mustCreate(t, c, createReq("src", 64*mib))
	snap := mustSnapshot(t, c, "snap", src.GetVolumeId())

	fromSnap := createReq("restore", 0)
	fromSnap.CapacityRange = &csi.CapacityRange{RequiredBytes: mib}
	fromSnap.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshotId()}}}
	restored := mustCreate(t, c, fromSnap)
	if restored.GetCapacityBytes() != 64*mib {
		t.Errorf("restored volume has %d bytes, want the snapshot's %d", restored.GetCapacityBytes(), 64*mib)
	}
	if restored.GetContentSource().GetSnapshot().GetSnapshotId() != snap.GetSnapshotId() {
		t.Errorf("content_source not returned: %v", restored.GetContentSource())
	}

	clone := createReq("clone", 128*mib)
	clone.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src.GetVolumeId()}}}
	cloned := mustCreate(t, c, clone)
	if v, _ := d.Volume(cloned.GetVolumeId()); v.SourceVolumeID != src.GetVolumeId() || v.CapacityBytes != 128*mib {
		t.Errorf("clone recorded as %+v", v)
	}

	missingSnap := createReq("restore-missing", mib)
	missingSnap.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snap-nope"}}}
	_, err := c.ctrl.CreateVolume(ctx(t), missingSnap)
	wantCode(t, err, codes.NotFound, "snap-nope")

	missingVol := createReq("clone-missing", mib)
	missingVol.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "vol-nope"}}}
	_, err = c.ctrl.CreateVolume(ctx(t), missingVol)
	wantCode(t, err, codes.NotFound, "vol-nope")

	tooSmall := createReq("restore-small", mib)
	tooSmall.CapacityRange.LimitBytes = 32 * mib
	tooSmall.VolumeContentSource = fromSnap.VolumeContentSource
	_, err = c.ctrl.CreateVolume(ctx(t), tooSmall)
	wantCode(t, err, codes.OutOfRange, "limit_bytes")

	// Same name, different source: not the same volume.
	otherSrc := createReq("clone", 128*mib)
	otherSrc.VolumeContentSource = fromSnap.VolumeContentSource
	_, err = c.ctrl.CreateVolume(ctx(t), otherSrc)
	wantCode(t, err, codes.AlreadyExists, "volume_content_source")
}

func TestDeleteVolume(t *testing.T) {
	d, c := startDriver(t, Options{})
	v := mustCreate(t, c, createReq("pvc-del", mib))
	if _, err := c.ctrl.DeleteVolume(ctx(t), &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Volume(v.GetVolumeId()); ok {
		t.Fatal("DeleteVolume returned OK but the volume is still in the backend")
	}
	if _, err := c.ctrl.DeleteVolume(ctx(t), &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
		t.Fatalf("deleting an unknown volume must succeed, got %v", err)
	}
	_, err := c.ctrl.DeleteVolume(ctx(t), &csi.DeleteVolumeRequest{})
	wantCode(t, err, codes.InvalidArgument, "volume_id")
}

func TestControllerExpandVolume(t *testing.T) {
	for _, nodeExpansion := range []bool{false, true} {
		d, c := startDriver(t, Options{NodeExpansionRequired: nodeExpansion})
		v := mustCreate(t, c, createReq("grow", 10*mib))
		resp, err := c.ctrl.ControllerExpandVolume(ctx(t), &csi.ControllerExpandVolumeRequest{
			VolumeId: v.GetVolumeId(), CapacityRange: &csi.CapacityRange{RequiredBytes: 20*mib + 1}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCapacityBytes() != 21*mib || resp.GetNodeExpansionRequired() != nodeExpansion {
			t.Fatalf("expand response %v, want 21 MiB and node_expansion_required=%t", resp, nodeExpansion)
		}
		if got, _ := d.Volume(v.GetVolumeId()); got.CapacityBytes != 21*mib {
			t.Fatalf("backend size %d after expand", got.CapacityBytes)
		}
		// Asking for less never shrinks.
		resp, err = c.ctrl.ControllerExpandVolume(ctx(t), &csi.ControllerExpandVolumeRequest{
			VolumeId: v.GetVolumeId(), CapacityRange: &csi.CapacityRange{RequiredBytes: 5 * mib}})
		if err != nil || resp.GetCapacityBytes() != 21*mib {
			t.Fatalf("smaller expand: %v, %v", resp, err)
		}
		_, err = c.ctrl.ControllerExpandVolume(ctx(t), &csi.ControllerExpandVolumeRequest{
			VolumeId: "vol-nope", CapacityRange: &csi.CapacityRange{RequiredBytes: mib}})
		wantCode(t, err, codes.NotFound, "vol-nope")
		_, err = c.ctrl.ControllerExpandVolume(ctx(t), &csi.ControllerExpandVolumeRequest{VolumeId: v.GetVolumeId()})
		wantCode(t, err, codes.InvalidArgument, "capacity_range")
		nodeCaps, err := c.node.NodeGetCapabilities(ctx(t), &csi.NodeGetCapabilitiesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		hasExpand := false
		for _, nc := range nodeCaps.GetCapabilities() {
			hasExpand = hasExpand || nc.GetRpc().GetType() == csi.NodeServiceCapability_RPC_EXPAND_VOLUME
		}
		if hasExpand != nodeExpansion {
			t.Fatalf("node EXPAND_VOLUME advertised=%t, want %t", hasExpand, nodeExpansion)
		}
	}
}

func TestControllerModifyVolume(t *testing.T) {
	d, c := startDriver(t, Options{
		MutableParameterKeys:        []string{"iops", "tier"},
		InfeasibleMutableParameters: map[string]string{"iops": "1000000"},
	})
	v := mustCreate(t, c, createReq("mod", mib))
	modify := func(params map[string]string) error {
		_, err := c.ctrl.ControllerModifyVolume(ctx(t), &csi.ControllerModifyVolumeRequest{VolumeId: v.GetVolumeId(), MutableParameters: params})
		return err
	}
	if err := modify(map[string]string{"iops": "3000", "tier": "gold"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Volume(v.GetVolumeId()); got.MutableParameters["iops"] != "3000" || got.MutableParameters["tier"] != "gold" {
		t.Fatalf("mutable parameters not applied: %v", got.MutableParameters)
	}
	wantCode(t, modify(map[string]string{"throughput": "1"}), codes.InvalidArgument, `"throughput"`)
	wantCode(t, modify(map[string]string{"iops": "1000000"}), codes.InvalidArgument, "infeasible")
	wantCode(t, modify(nil), codes.InvalidArgument, "mutable_parameters")
	if got, _ := d.Volume(v.GetVolumeId()); got.MutableParameters["iops"] != "3000" {
		t.Fatalf("rejected modify changed the volume: %v", got.MutableParameters)
	}
	_, err := c.ctrl.ControllerModifyVolume(ctx(t), &csi.ControllerModifyVolumeRequest{VolumeId: "vol-nope", MutableParameters: map[string]string{"iops": "1"}})
	wantCode(t, err, codes.NotFound, "vol-nope")
}

func TestListVolumesPaging(t *testing.T) {
	_, c := startDriver(t, Options{})
	want := map[string]bool{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		want[mustCreate(t, c, createReq(n, mib)).GetVolumeId()] = true
	}
	seen := map[string]bool{}
	token := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		resp, err := c.ctrl.ListVolumes(ctx(t), &csi.ListVolumesRequest{MaxEntries: 2, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetEntries()) > 2 {
			t.Fatalf("page of %d entries with max_entries 2", len(resp.GetEntries()))
		}
		for _, e := range resp.GetEntries() {
			if seen[e.GetVolume().GetVolumeId()] {
				t.Fatalf("volume %s listed twice", e.GetVolume().GetVolumeId())
			}
			seen[e.GetVolume().GetVolumeId()] = true
		}
		if token = resp.GetNextToken(); token == "" {
			break
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("listed %d volumes, want %d", len(seen), len(want))
	}
	_, err := c.ctrl.ListVolumes(ctx(t), &csi.ListVolumesRequest{StartingToken: "garbage"})
	wantCode(t, err, codes.Aborted, "starting_token")
}

func TestValidateVolumeCapabilities(t *testing.T) {
	_, c := startDriver(t, Options{})
	v := mustCreate(t, c, createReq("vvc", mib))
	resp, err := c.ctrl.ValidateVolumeCapabilities(ctx(t), &csi.ValidateVolumeCapabilitiesRequest{
		VolumeId: v.GetVolumeId(), VolumeCapabilities: []*csi.VolumeCapability{rwo}})
	if err != nil || resp.GetConfirmed() == nil {
		t.Fatalf("mount capability not confirmed for a mount volume: %v, %v", resp, err)
	}
	block := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}, AccessMode: rwo.AccessMode}
	resp, err = c.ctrl.ValidateVolumeCapabilities(ctx(t), &csi.ValidateVolumeCapabilitiesRequest{
		VolumeId: v.GetVolumeId(), VolumeCapabilities: []*csi.VolumeCapability{block}})
	if err != nil || resp.GetConfirmed() != nil || resp.GetMessage() == "" {
		t.Fatalf("block capability confirmed for a mount volume: %v, %v", resp, err)
	}
	_, err = c.ctrl.ValidateVolumeCapabilities(ctx(t), &csi.ValidateVolumeCapabilitiesRequest{
		VolumeId: "vol-nope", VolumeCapabilities: []*csi.VolumeCapability{rwo}})
	wantCode(t, err, codes.NotFound, "vol-nope")
}
