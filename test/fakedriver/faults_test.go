package fakedriver

import (
	"context"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestInjectErrorCounts(t *testing.T) {
	d, c := startDriver(t, Options{})
	d.InjectError("CreateVolume", codes.ResourceExhausted, "pool busy", 2)
	for i := range 2 {
		_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-x", mib))
		wantCode(t, err, codes.ResourceExhausted, "pool busy")
		if len(d.Volumes()) != 0 {
			t.Fatalf("call %d: injected failure still created a volume", i)
		}
	}
	mustCreate(t, c, createReq("pvc-x", mib))
	if got := d.Calls("CreateVolume"); got != 3 {
		t.Fatalf("Calls = %d, want 3", got)
	}
	// Other methods are untouched.
	if _, err := c.ctrl.GetCapacity(ctx(t), &csi.GetCapacityRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestInjectErrorQueueAndForever(t *testing.T) {
	d, c := startDriver(t, Options{})
	d.InjectError("DeleteVolume", codes.Unavailable, "first", 1)
	d.InjectError("DeleteVolume", codes.Internal, "then forever", Forever)
	del := func() error {
		_, err := c.ctrl.DeleteVolume(ctx(t), &csi.DeleteVolumeRequest{VolumeId: "vol-1"})
		return err
	}
	wantCode(t, del(), codes.Unavailable, "first")
	for range 3 {
		wantCode(t, del(), codes.Internal, "then forever")
	}
	d.ClearFaults()
	if err := del(); err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}
}

func TestInjectErrorIfMatchesOnlyChosenCalls(t *testing.T) {
	d, c := startDriver(t, Options{})
	d.InjectErrorIf("CreateVolume", func(req proto.Message) bool {
		return req.(*csi.CreateVolumeRequest).GetName() == "pvc-bad"
	}, codes.Internal, "bad one", 2)
	d.InjectError("CreateVolume", codes.Unavailable, "everyone after", 1)

	// A non-matching call skips the matching-only entry and takes the next one.
	_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-good", mib))
	wantCode(t, err, codes.Unavailable, "everyone after")
	mustCreate(t, c, createReq("pvc-good", mib))
	for range 2 {
		_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-bad", mib))
		wantCode(t, err, codes.Internal, "bad one")
	}
	mustCreate(t, c, createReq("pvc-bad", mib))
	if n := len(d.Volumes()); n != 2 {
		t.Fatalf("%d volumes, want 2", n)
	}
}

func TestInjectErrorAfterLosesTheResponse(t *testing.T) {
	d, c := startDriver(t, Options{})
	d.InjectErrorAfter("CreateVolume", codes.DeadlineExceeded, "response lost", 1)
	_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-lost", mib))
	wantCode(t, err, codes.DeadlineExceeded, "response lost")
	leaked, ok := d.VolumeByName("pvc-lost")
	if !ok {
		t.Fatal("InjectErrorAfter: the operation did not take effect")
	}
	// A correct caller retries with the same name and adopts the volume.
	if v := mustCreate(t, c, createReq("pvc-lost", mib)); v.GetVolumeId() != leaked.ID {
		t.Fatalf("retry returned %s, want %s", v.GetVolumeId(), leaked.ID)
	}
}

func TestDelayOutlivesCallerDeadline(t *testing.T) {
	d, c := startDriver(t, Options{})
	d.SetDelay("CreateVolume", 300*time.Millisecond)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.ctrl.CreateVolume(short, createReq("pvc-slow", mib))
	wantCode(t, err, codes.DeadlineExceeded)
	// The backend finishes anyway, as a real one would.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := d.VolumeByName("pvc-slow"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("delayed CreateVolume never completed in the backend")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A delay far beyond the caller's deadline, then removed: the call must
	// make it in time.
	d.SetDelay("CreateVolume", time.Minute)
	d.SetDelay("CreateVolume", 0)
	inTime, cancelInTime := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelInTime()
	if _, err := c.ctrl.CreateVolume(inTime, createReq("pvc-fast", mib)); err != nil {
		t.Fatalf("delay not removed: %v", err)
	}
}

func TestGateHoldsCallUntilReleased(t *testing.T) {
	d, c := startDriver(t, Options{})
	g := d.Gate("CreateVolume")
	if again := d.Gate("CreateVolume"); again != g {
		t.Fatal("a second Gate on the same method must return the installed gate")
	}
	callerCtx, cancelCaller := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.ctrl.CreateVolume(callerCtx, createReq("pvc-gated", mib))
		done <- err
	}()
	if err := g.WaitArrived(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if g.Held() != 1 {
		t.Fatalf("Held = %d, want 1", g.Held())
	}
	select {
	case err := <-done:
		t.Fatalf("gated call returned before release: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	// The caller goes away (as a restarting csi-hub would); the driver still
	// completes the operation once released.
	cancelCaller()
	wantCode(t, <-done, codes.Canceled)
	if _, ok := d.VolumeByName("pvc-gated"); ok {
		t.Fatal("volume created while the call was held")
	}
	g.Release()
	g.Release() // harmless
	waitFor(t, func() bool { _, ok := d.VolumeByName("pvc-gated"); return ok }, "released call to create the volume")
	if g.Held() != 0 {
		t.Fatalf("Held = %d after release", g.Held())
	}
	// Later calls pass freely.
	mustCreate(t, c, createReq("pvc-after", mib))
}

func TestClearFaultsReleasesGates(t *testing.T) {
	d, c := startDriver(t, Options{})
	g := d.Gate("DeleteSnapshot")
	done := make(chan error, 1)
	go func() {
		_, err := c.ctrl.DeleteSnapshot(ctx(t), &csi.DeleteSnapshotRequest{SnapshotId: "snap-x"})
		done <- err
	}()
	if err := g.WaitArrived(ctx(t)); err != nil {
		t.Fatal(err)
	}
	d.ClearFaults()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ClearFaults did not release the gate")
	}
}

func TestRequestsAreRecordedCopies(t *testing.T) {
	d, c := startDriver(t, Options{Topology: true})
	req := createReq("pvc-rec", 2*mib)
	req.Parameters = map[string]string{"type": "fast"}
	req.Secrets = map[string]string{"password": "s3cret"}
	req.AccessibilityRequirements = &csi.TopologyRequirement{
		Preferred: []*csi.Topology{{Segments: map[string]string{DefaultTopologyKey: "zone-b"}}}}
	mustCreate(t, c, req)
	_, _ = c.ctrl.CreateVolume(ctx(t), &csi.CreateVolumeRequest{}) // invalid: still recorded

	all := RequestsOf[*csi.CreateVolumeRequest](d)
	if len(all) != 2 || d.Calls("CreateVolume") != 2 {
		t.Fatalf("recorded %d requests, Calls=%d; want 2", len(all), d.Calls("CreateVolume"))
	}
	got := all[0]
	if got.GetName() != "pvc-rec" || got.GetParameters()["type"] != "fast" || got.GetSecrets()["password"] != "s3cret" ||
		got.GetAccessibilityRequirements().GetPreferred()[0].GetSegments()[DefaultTopologyKey] != "zone-b" ||
		got.GetVolumeCapabilities()[0].GetMount().GetFsType() != "ext4" {
		t.Fatalf("recorded request differs from the sent one: %v", got)
	}
	got.Name = "mutated"
	if again, _ := LastRequest[*csi.CreateVolumeRequest](d); again.GetName() != "" {
		t.Fatalf("LastRequest = %q, want the invalid request's empty name", again.GetName())
	}
	if d.Requests("CreateVolume")[0].(*csi.CreateVolumeRequest).GetName() != "pvc-rec" {
		t.Fatal("Requests returned the recorded message itself, not a copy")
	}
	if _, ok := LastRequest[*csi.DeleteVolumeRequest](d); ok {
		t.Fatal("LastRequest found a DeleteVolume that was never sent")
	}
	d.ResetCalls()
	if d.Calls("CreateVolume") != 0 {
		t.Fatal("ResetCalls kept the count")
	}
}

func TestWaitCalls(t *testing.T) {
	d, c := startDriver(t, Options{})
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.WaitCalls(short, "DeleteVolume", 1); err == nil {
		t.Fatal("WaitCalls returned before any call")
	}
	go func() {
		for range 3 {
			_, _ = c.ctrl.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: "vol-x"})
		}
	}()
	if err := d.WaitCalls(ctx(t), "DeleteVolume", 3); err != nil {
		t.Fatal(err)
	}
	if got := d.Calls("DeleteVolume"); got < 3 {
		t.Fatalf("WaitCalls returned at %d calls", got)
	}
}

func TestUnknownMethodPanics(t *testing.T) {
	d := New(Options{})
	for name, f := range map[string]func(){
		"InjectError": func() { d.InjectError("CreateVolum", codes.Internal, "", 1) },
		"SetDelay":    func() { d.SetDelay("Createvolume", time.Second) },
		"Gate":        func() { d.Gate("createVolume") },
		"Calls":       func() { d.Calls("Nope") },
		"WaitCalls":   func() { _ = d.WaitCalls(context.Background(), "Nope", 1) },
		"times 0":     func() { d.InjectError("CreateVolume", codes.Internal, "", 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with a bad argument did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestProbe(t *testing.T) {
	d, c := startDriver(t, Options{NotReady: true})
	ready := func() bool {
		resp, err := c.id.Probe(ctx(t), &csi.ProbeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetReady().GetValue()
	}
	if ready() {
		t.Fatal("NotReady driver probes ready")
	}
	d.SetReady(true)
	if !ready() {
		t.Fatal("SetReady(true) not reflected")
	}
	d.InjectError("Probe", codes.FailedPrecondition, "backend down", Forever)
	_, err := c.id.Probe(ctx(t), &csi.ProbeRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Probe with injected failure: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAbortConcurrent(t *testing.T) {
	d, c := startDriver(t, Options{AbortConcurrent: true})
	g := d.Gate("CreateVolume")
	done := make(chan error, 1)
	go func() {
		_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-busy", mib))
		done <- err
	}()
	if err := g.WaitArrived(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// The same name while the first call is held: Aborted at once, not held.
	_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-busy", mib))
	wantCode(t, err, codes.Aborted, "pvc-busy")
	if g.Held() != 1 {
		t.Fatalf("the aborted call was held too: Held=%d", g.Held())
	}
	// Another name is not blocked by the first operation (only by the gate).
	other := make(chan error, 1)
	go func() {
		_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-other", mib))
		other <- err
	}()
	waitFor(t, func() bool { return g.Held() == 2 }, "the other volume's call to reach the gate")
	g.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	// Finished operations free their object.
	v := mustCreate(t, c, createReq("pvc-busy", mib))
	if _, err := c.ctrl.DeleteVolume(ctx(t), &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentCallsAllowedByDefault(t *testing.T) {
	d, c := startDriver(t, Options{})
	g := d.Gate("CreateVolume")
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := c.ctrl.CreateVolume(ctx(t), createReq("pvc-same", mib))
			errs <- err
		}()
	}
	waitFor(t, func() bool { return g.Held() == 2 }, "both calls to reach the gate")
	g.Release()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := len(d.Volumes()); n != 1 {
		t.Fatalf("two concurrent CreateVolume of one name made %d volumes", n)
	}
}
