package fakedriver

import (
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

func controllerCaps(t *testing.T, c *client) []csi.ControllerServiceCapability_RPC_Type {
	t.Helper()
	resp, err := c.ctrl.ControllerGetCapabilities(ctx(t), &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []csi.ControllerServiceCapability_RPC_Type
	for _, cp := range resp.GetCapabilities() {
		out = append(out, cp.GetRpc().GetType())
	}
	return out
}

func pluginServices(t *testing.T, c *client) (services []csi.PluginCapability_Service_Type, expansion csi.PluginCapability_VolumeExpansion_Type) {
	t.Helper()
	resp, err := c.id.GetPluginCapabilities(ctx(t), &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range resp.GetCapabilities() {
		if s := cp.GetService(); s != nil {
			services = append(services, s.GetType())
		}
		if e := cp.GetVolumeExpansion(); e != nil {
			expansion = e.GetType()
		}
	}
	return services, expansion
}

func TestDefaultCapabilities(t *testing.T) {
	_, c := startDriver(t, Options{})
	info, err := c.id.GetPluginInfo(ctx(t), &csi.GetPluginInfoRequest{})
	if err != nil || info.GetName() != DefaultDriverName || info.GetVendorVersion() == "" {
		t.Fatalf("GetPluginInfo: %v, %v", info, err)
	}
	got := controllerCaps(t, c)
	want := DefaultControllerCapabilities()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("controller capabilities %v, want %v", got, want)
	}
	services, expansion := pluginServices(t, c)
	if !slices.Equal(services, []csi.PluginCapability_Service_Type{csi.PluginCapability_Service_CONTROLLER_SERVICE}) {
		t.Fatalf("plugin services %v: want only CONTROLLER_SERVICE (no topology by default)", services)
	}
	if expansion != csi.PluginCapability_VolumeExpansion_ONLINE {
		t.Fatalf("volume expansion %v, want ONLINE", expansion)
	}
	v := mustCreate(t, c, createReq("v", mib))
	if len(v.GetAccessibleTopology()) != 0 {
		t.Fatalf("accessible_topology %v without topology", v.GetAccessibleTopology())
	}
	_, err = c.ctrl.ControllerPublishVolume(ctx(t), &csi.ControllerPublishVolumeRequest{VolumeId: v.GetVolumeId(), NodeId: "n", VolumeCapability: rwo})
	wantCode(t, err, codes.Unimplemented, "PUBLISH_UNPUBLISH_VOLUME")
	node, err := c.node.NodeGetInfo(ctx(t), &csi.NodeGetInfoRequest{})
	if err != nil || node.GetNodeId() != DefaultNodeID || node.GetAccessibleTopology() != nil {
		t.Fatalf("NodeGetInfo: %v, %v", node, err)
	}
	// Without attach, the node service works on an unpublished volume.
	nodeStagePublish(t, c, v.GetVolumeId())
}

func nodeStagePublish(t *testing.T, c *client, volID string) {
	t.Helper()
	if _, err := c.node.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: volID, StagingTargetPath: "/stage/" + volID, VolumeCapability: rwo}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.node.NodePublishVolume(ctx(t), &csi.NodePublishVolumeRequest{VolumeId: volID, StagingTargetPath: "/stage/" + volID,
		TargetPath: "/pods/" + volID, VolumeCapability: rwo}); err != nil {
		t.Fatal(err)
	}
}

func TestCapabilitiesCanBeNarrowed(t *testing.T) {
	_, c := startDriver(t, Options{Name: "narrow.example.com", ControllerCapabilities: []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME}})
	if got := controllerCaps(t, c); !slices.Equal(got, []csi.ControllerServiceCapability_RPC_Type{csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME}) {
		t.Fatalf("capabilities %v", got)
	}
	if _, exp := pluginServices(t, c); exp != csi.PluginCapability_VolumeExpansion_UNKNOWN {
		t.Fatal("VolumeExpansion advertised without EXPAND_VOLUME")
	}
	v := mustCreate(t, c, createReq("v", mib))
	_, err := c.ctrl.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: v.GetVolumeId()})
	wantCode(t, err, codes.Unimplemented, "CREATE_DELETE_SNAPSHOT")
	_, err = c.ctrl.ControllerExpandVolume(ctx(t), &csi.ControllerExpandVolumeRequest{VolumeId: v.GetVolumeId(), CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * mib}})
	wantCode(t, err, codes.Unimplemented, "EXPAND_VOLUME")
	_, err = c.ctrl.ListVolumes(ctx(t), &csi.ListVolumesRequest{})
	wantCode(t, err, codes.Unimplemented, "LIST_VOLUMES")
	clone := createReq("clone", mib)
	clone.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.GetVolumeId()}}}
	_, err = c.ctrl.CreateVolume(ctx(t), clone)
	wantCode(t, err, codes.Unimplemented, "CLONE_VOLUME")
}

func TestAttachSwitchedOn(t *testing.T) {
	d, c := startDriver(t, Options{Attach: true, ListPublishedNodes: true, MaxVolumesPerNode: 2, NodeID: "node-a", Nodes: []string{"node-a", "node-b"}})
	caps := controllerCaps(t, c)
	for _, want := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME, csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES} {
		if !slices.Contains(caps, want) {
			t.Fatalf("%v not advertised: %v", want, caps)
		}
	}
	v := mustCreate(t, c, createReq("att", mib))
	publish := func(volID, node string, readonly bool) (*csi.ControllerPublishVolumeResponse, error) {
		return c.ctrl.ControllerPublishVolume(ctx(t), &csi.ControllerPublishVolumeRequest{VolumeId: volID, NodeId: node, VolumeCapability: rwo, Readonly: readonly})
	}

	// The node refuses a volume the controller has not published to it.
	_, err := c.node.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: v.GetVolumeId(), StagingTargetPath: "/s", VolumeCapability: rwo})
	wantCode(t, err, codes.FailedPrecondition, "not published")

	resp, err := publish(v.GetVolumeId(), "node-a", false)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPublishContext()[PublishContextNode] != "node-a" || resp.GetPublishContext()[PublishContextDevice] == "" {
		t.Fatalf("publish context %v", resp.GetPublishContext())
	}
	if again, err := publish(v.GetVolumeId(), "node-a", false); err != nil || again.GetPublishContext()[PublishContextDevice] != resp.GetPublishContext()[PublishContextDevice] {
		t.Fatalf("repeated publish: %v, %v", again, err)
	}
	_, err = publish(v.GetVolumeId(), "node-a", true)
	wantCode(t, err, codes.AlreadyExists, "readonly")
	_, err = publish(v.GetVolumeId(), "node-b", false)
	wantCode(t, err, codes.FailedPrecondition, "node-a")
	_, err = publish("vol-nope", "node-a", false)
	wantCode(t, err, codes.NotFound, "vol-nope")
	_, err = publish(v.GetVolumeId(), "node-unknown", false)
	wantCode(t, err, codes.NotFound, "node-unknown")
	_, err = c.ctrl.ControllerPublishVolume(ctx(t), &csi.ControllerPublishVolumeRequest{VolumeId: v.GetVolumeId(), VolumeCapability: rwo})
	wantCode(t, err, codes.InvalidArgument, "node_id")

	nodeStagePublish(t, c, v.GetVolumeId())
	if got, _ := d.Volume(v.GetVolumeId()); got.StagingPath != "/stage/"+v.GetVolumeId() || !slices.Equal(got.TargetPaths, []string{"/pods/" + v.GetVolumeId()}) {
		t.Fatalf("node paths not recorded: %+v", got)
	}

	list, err := c.ctrl.ListVolumes(ctx(t), &csi.ListVolumesRequest{})
	if err != nil || !slices.Equal(list.GetEntries()[0].GetStatus().GetPublishedNodeIds(), []string{"node-a"}) {
		t.Fatalf("ListVolumes published nodes: %v, %v", list, err)
	}
	_, err = c.ctrl.DeleteVolume(ctx(t), &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()})
	wantCode(t, err, codes.FailedPrecondition, "published")

	// Node limit.
	for _, n := range []string{"x", "y"} {
		w := mustCreate(t, c, createReq(n, mib))
		_, err = publish(w.GetVolumeId(), "node-a", false)
		if n == "y" {
			wantCode(t, err, codes.ResourceExhausted, "maximum")
		} else if err != nil {
			t.Fatal(err)
		}
	}

	if _, err := c.ctrl.ControllerUnpublishVolume(ctx(t), &csi.ControllerUnpublishVolumeRequest{VolumeId: v.GetVolumeId(), NodeId: "node-a"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Volume(v.GetVolumeId()); len(got.Attachments) != 0 {
		t.Fatalf("attachment left after unpublish: %v", got.Attachments)
	}
	if _, err := c.ctrl.ControllerUnpublishVolume(ctx(t), &csi.ControllerUnpublishVolumeRequest{VolumeId: "vol-gone", NodeId: "node-a"}); err != nil {
		t.Fatalf("unpublishing an unknown volume must succeed: %v", err)
	}
	if _, err := c.ctrl.DeleteVolume(ctx(t), &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
}

func TestTopologySwitchedOn(t *testing.T) {
	const key = "example.com/zone"
	_, c := startDriver(t, Options{Topology: true, TopologyKey: key, Zones: []string{"z1", "z2", "z3"}, NodeZone: "z2"})
	services, _ := pluginServices(t, c)
	if !slices.Contains(services, csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS) {
		t.Fatalf("VOLUME_ACCESSIBILITY_CONSTRAINTS not advertised: %v", services)
	}
	node, err := c.node.NodeGetInfo(ctx(t), &csi.NodeGetInfoRequest{})
	if err != nil || node.GetAccessibleTopology().GetSegments()[key] != "z2" {
		t.Fatalf("NodeGetInfo topology: %v, %v", node, err)
	}
	zone := func(req *csi.TopologyRequirement) (string, error) {
		r := createReq("v-"+req.String(), mib)
		r.AccessibilityRequirements = req
		resp, err := c.ctrl.CreateVolume(ctx(t), r)
		if err != nil {
			return "", err
		}
		return resp.GetVolume().GetAccessibleTopology()[0].GetSegments()[key], nil
	}
	seg := func(z string) *csi.Topology { return &csi.Topology{Segments: map[string]string{key: z}} }
	cases := []struct {
		name string
		req  *csi.TopologyRequirement
		want string
	}{
		{"none: node zone", &csi.TopologyRequirement{}, "z2"},
		{"preferred first", &csi.TopologyRequirement{Requisite: []*csi.Topology{seg("z1"), seg("z3")}, Preferred: []*csi.Topology{seg("z3"), seg("z1")}}, "z3"},
		{"preferred outside requisite skipped", &csi.TopologyRequirement{Requisite: []*csi.Topology{seg("z1")}, Preferred: []*csi.Topology{seg("z2")}}, "z1"},
		{"unknown requisite ignored", &csi.TopologyRequirement{Requisite: []*csi.Topology{seg("mars"), seg("z3")}}, "z3"},
	}
	for _, tc := range cases {
		got, err := zone(tc.req)
		if err != nil || got != tc.want {
			t.Errorf("%s: zone %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	_, err = zone(&csi.TopologyRequirement{Requisite: []*csi.Topology{seg("mars")}})
	wantCode(t, err, codes.ResourceExhausted, "requisite")

	// Clones stay in their source's zone.
	src := createReq("clone-src", mib)
	src.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{seg("z3")}}
	srcVol := mustCreate(t, c, src)
	cloneOf := func(name string, req *csi.TopologyRequirement) (*csi.CreateVolumeResponse, error) {
		r := createReq(name, mib)
		r.AccessibilityRequirements = req
		r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: srcVol.GetVolumeId()}}}
		return c.ctrl.CreateVolume(ctx(t), r)
	}
	clone, err := cloneOf("clone-ok", &csi.TopologyRequirement{Requisite: []*csi.Topology{seg("z1"), seg("z3")}, Preferred: []*csi.Topology{seg("z1")}})
	if err != nil || clone.GetVolume().GetAccessibleTopology()[0].GetSegments()[key] != "z3" {
		t.Fatalf("clone placed at %v (%v), want the source's z3", clone.GetVolume().GetAccessibleTopology(), err)
	}
	_, err = cloneOf("clone-bad", &csi.TopologyRequirement{Requisite: []*csi.Topology{seg("z1")}})
	wantCode(t, err, codes.ResourceExhausted, "z3")

	capResp, err := c.ctrl.GetCapacity(ctx(t), &csi.GetCapacityRequest{AccessibleTopology: seg("mars")})
	if err != nil || capResp.GetAvailableCapacity() != 0 {
		t.Fatalf("capacity in an unknown zone: %v, %v", capResp, err)
	}
	capResp, err = c.ctrl.GetCapacity(ctx(t), &csi.GetCapacityRequest{AccessibleTopology: seg("z1")})
	if err != nil || capResp.GetAvailableCapacity() <= 0 {
		t.Fatalf("capacity in a served zone: %v, %v", capResp, err)
	}
}
