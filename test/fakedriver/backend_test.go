package fakedriver

import (
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/testutil"
)

func TestBackendManipulation(t *testing.T) {
	d, c := startDriver(t, Options{TotalCapacityBytes: 10 * mib, Attach: true})
	v := mustCreate(t, c, createReq("v", 4*mib))

	d.SetTotalCapacity(6 * mib)
	_, err := c.ctrl.CreateVolume(ctx(t), createReq("w", 4*mib))
	wantCode(t, err, codes.ResourceExhausted, "capacity")
	capResp, err := c.ctrl.GetCapacity(ctx(t), &csi.GetCapacityRequest{})
	if err != nil || capResp.GetAvailableCapacity() != 2*mib {
		t.Fatalf("GetCapacity after shrinking the pool: %v, %v", capResp, err)
	}

	// A statically provisioned volume is usable through the CSI API.
	static, err := d.AddVolume(Volume{Name: "static", CapacityBytes: mib})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ctrl.ControllerPublishVolume(ctx(t), &csi.ControllerPublishVolumeRequest{
		VolumeId: static, NodeId: DefaultNodeID, VolumeCapability: rwo}); err != nil {
		t.Fatalf("publishing an added volume: %v", err)
	}

	// A volume that vanishes from the backend is NotFound to the CO.
	if ok, err := d.RemoveVolume(v.GetVolumeId()); !ok || err != nil {
		t.Fatalf("RemoveVolume: %t, %v", ok, err)
	}
	_, err = c.ctrl.ControllerPublishVolume(ctx(t), &csi.ControllerPublishVolumeRequest{
		VolumeId: v.GetVolumeId(), NodeId: DefaultNodeID, VolumeCapability: rwo})
	wantCode(t, err, codes.NotFound, v.GetVolumeId())
	if ok, _ := d.RemoveVolume(v.GetVolumeId()); ok {
		t.Fatal("RemoveVolume reported a missing volume as removed")
	}

	snap, err := d.AddSnapshot(Snapshot{Name: "pre", SourceVolumeID: static, SizeBytes: mib, ReadyToUse: true})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := d.RemoveSnapshot(snap); !ok || err != nil || len(d.Snapshots()) != 0 {
		t.Fatalf("RemoveSnapshot: %t, %v, left %v", ok, err, d.Snapshots())
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	out := testutil.CaptureKlog(t, 5)

	const secret = "hunter2-do-not-log"
	_, c := startDriver(t, Options{})
	req := createReq("pvc-with-secret", mib)
	req.Secrets = map[string]string{"password": secret}
	v := mustCreate(t, c, req)
	if _, err := c.node.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: v.GetVolumeId(), StagingTargetPath: "/s",
		VolumeCapability: rwo, Secrets: map[string]string{"key": secret}}); err != nil {
		t.Fatal(err)
	}
	klog.Flush()
	logged := out.String()
	if !strings.Contains(logged, "pvc-with-secret") {
		t.Fatalf("requests were not logged at -v=5, so this test proves nothing; log:\n%s", logged)
	}
	if strings.Contains(logged, secret) {
		t.Fatalf("a secret value reached the log:\n%s", logged)
	}
}
