package fakedriver

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRestartKeepsState(t *testing.T) {
	d, c := startDriver(t, Options{})
	v := mustCreate(t, c, createReq("pvc-r", mib))
	snap := mustSnapshot(t, c, "snap-r", v.GetVolumeId())

	d.Stop()
	if _, err := c.ctrl.ListVolumes(ctx(t), &csi.ListVolumesRequest{}); err == nil {
		t.Fatal("stopped driver still answers")
	}
	if _, err := os.Stat(c.socket); !os.IsNotExist(err) {
		t.Fatalf("socket still there after Stop: %v", err)
	}
	if err := d.Start(c.socket); err != nil {
		t.Fatalf("restart on the same socket: %v", err)
	}
	// The same client connection reconnects, as csi-hub's would.
	var resp *csi.ListVolumesResponse
	if err := untilReconnected(t, func() (err error) {
		resp, err = c.ctrl.ListVolumes(ctx(t), &csi.ListVolumesRequest{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(resp.GetEntries()) != 1 || resp.GetEntries()[0].GetVolume().GetVolumeId() != v.GetVolumeId() {
		t.Fatalf("after restart ListVolumes = %v, want only %s", resp.GetEntries(), v.GetVolumeId())
	}
	if again := mustCreate(t, c, createReq("pvc-r", mib)); again.GetVolumeId() != v.GetVolumeId() {
		t.Fatal("idempotency lost across restart")
	}
	if again := mustSnapshot(t, c, "snap-r", v.GetVolumeId()); again.GetSnapshotId() != snap.GetSnapshotId() {
		t.Fatal("snapshot idempotency lost across restart")
	}
}

func TestStartErrors(t *testing.T) {
	d, c := startDriver(t, Options{})
	if err := d.Start(c.socket); err == nil {
		t.Fatal("second Start on a running driver succeeded")
	}
	notSocket := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notSocket, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := New(Options{})
	if err := other.Start(notSocket); err == nil {
		other.StopNow()
		t.Fatal("Start replaced a regular file")
	}
	if data, _ := os.ReadFile(notSocket); string(data) != "keep me" {
		t.Fatal("Start clobbered a regular file")
	}
}

func TestStopNowCutsInFlightCallButBackendFinishes(t *testing.T) {
	d, c := startDriver(t, Options{})
	g := d.Gate("CreateVolume")
	done := make(chan error, 1)
	go func() {
		_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-inflight", mib))
		done <- err
	}()
	if err := g.WaitArrived(ctx(t)); err != nil {
		t.Fatal(err)
	}
	d.StopNow()
	wantCode(t, <-done, codes.Unavailable)
	if _, err := os.Stat(c.socket); !os.IsNotExist(err) {
		t.Fatalf("socket still there after StopNow: %v", err)
	}
	if err := d.Start(c.socket); err != nil {
		t.Fatal(err)
	}
	g.Release()
	waitFor(t, func() bool { _, ok := d.VolumeByName("pvc-inflight"); return ok }, "the cut-off call to finish in the backend")
	// The restarted caller's retry finds the volume instead of leaking a second one.
	if err := untilReconnected(t, func() error {
		_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-inflight", mib))
		return err
	}); err != nil {
		t.Fatalf("retry after restart: %v", err)
	}
	if n := len(d.Volumes()); n != 1 {
		t.Fatalf("%d volumes after retry, want 1", n)
	}
}

func TestGracefulStopLetsInFlightCallFinish(t *testing.T) {
	d, c := startDriver(t, Options{})
	d.SetDelay("CreateVolume", 200*time.Millisecond)
	done := make(chan error, 1)
	go func() {
		_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-graceful", mib))
		done <- err
	}()
	if err := d.WaitCalls(ctx(t), "CreateVolume", 1); err != nil {
		t.Fatal(err)
	}
	d.Stop()
	if err := <-done; err != nil {
		t.Fatalf("graceful stop cut off an in-flight call: %v", err)
	}
}

func TestGracefulStopIsBoundedByStopTimeout(t *testing.T) {
	d, c := startDriver(t, Options{StopTimeout: 100 * time.Millisecond})
	g := d.Gate("CreateVolume")
	defer g.Release()
	done := make(chan error, 1)
	go func() {
		_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-held", mib))
		done <- err
	}()
	if err := g.WaitArrived(ctx(t)); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { d.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop hung on a gated call")
	}
	wantCode(t, <-done, codes.Unavailable)
}

func TestStateFilePersistence(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "not-yet", "state.json")
	d, c := startDriver(t, Options{StateFile: stateFile, Attach: true, NodeID: "node-1"})
	v := mustCreate(t, c, createReq("pvc-p", 3*mib))
	snap := mustSnapshot(t, c, "snap-p", v.GetVolumeId())
	if _, err := c.ctrl.ControllerPublishVolume(ctx(t), &csi.ControllerPublishVolumeRequest{
		VolumeId: v.GetVolumeId(), NodeId: "node-1", VolumeCapability: rwo}); err != nil {
		t.Fatal(err)
	}
	before := d.Volumes()
	d.StopNow()

	// A brand-new driver takes over the backend.
	fresh := New(Options{StateFile: stateFile, Attach: true, NodeID: "node-1"})
	after := fresh.Volumes()
	if len(after) != 1 || after[0].ID != v.GetVolumeId() || after[0].CapacityBytes != before[0].CapacityBytes ||
		after[0].Attachments["node-1"].PublishContext[PublishContextNode] != "node-1" {
		t.Fatalf("loaded volumes %+v, want %+v", after, before)
	}
	if s := fresh.Snapshots(); len(s) != 1 || s[0].ID != snap.GetSnapshotId() {
		t.Fatalf("loaded snapshots %+v", s)
	}
	if err := fresh.Start(c.socket); err != nil {
		t.Fatal(err)
	}
	defer fresh.StopNow()
	var again *csi.CreateVolumeResponse
	err := untilReconnected(t, func() (err error) {
		again, err = c.ctrl.CreateVolume(ctx(t), createReq("pvc-p", 3*mib))
		return err
	})
	if err != nil || again.GetVolume().GetVolumeId() != v.GetVolumeId() {
		t.Fatalf("idempotency lost across drivers: %v, %v", again, err)
	}

	// A deletion is persisted too.
	if _, err := c.ctrl.DeleteSnapshot(ctx(t), &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshotId()}); err != nil {
		t.Fatal(err)
	}
	if s := New(Options{StateFile: stateFile}).Snapshots(); len(s) != 0 {
		t.Fatalf("deleted snapshot still in the state file: %+v", s)
	}
}

func TestCorruptStateFileFailsStart(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(stateFile, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := New(Options{StateFile: stateFile})
	if err := d.Start(socketPath(t)); err == nil {
		d.StopNow()
		t.Fatal("Start succeeded with a corrupt state file")
	}
}

// untilReconnected retries call while it fails with Unavailable, as a caller
// must after its driver restarted: a call can still go out on the connection
// the old server closed before the client noticed.
func untilReconnected(t *testing.T, call func() error) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := call()
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
