package attacher_test

import (
	"context"
	"slices"
	"testing"
	"time"

	storagev1 "k8s.io/api/storage/v1"

	"github.com/csi-hub/csi-hub/attacher"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// TestRestartMidPublish: the hub stops while ControllerPublishVolume is held
// inside the driver; a new hub takes over, the call completes, and the
// VolumeAttachment converges to attached, then detaches with no finalizer
// left behind on the VolumeAttachment or the PV.
func TestRestartMidPublish(t *testing.T) {
	e := newEnv(t, "restart", fakedriver.Options{Attach: true})
	e.registerNode()
	gate := e.driver.Gate("ControllerPublishVolume")
	e.startHub()
	pv, handle := e.volume("data")
	e.pod("app", "data")
	va := e.va(pv)
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	if err := gate.WaitArrived(ctx); err != nil {
		e.dump(va.Name)
		t.Fatal(err)
	}
	// The finalizers went on before the call: a crash from here on cannot
	// lose track of a volume that may end up attached.
	held := e.waitVA(va.Name, "to carry the finalizer", 10*time.Second, func(va *storagev1.VolumeAttachment) bool {
		return slices.Contains(va.Finalizers, attacher.FinalizerName(e.name))
	})
	if held.Status.Attached {
		t.Fatal("attached=true while the publish is still held in the driver")
	}

	if err := e.hub.Stop(); err != nil {
		t.Fatalf("stopping the hub with a call in flight: %v", err)
	}
	e.startHub() // a new process: fresh informers, queues and connection
	gate.Release()

	e.waitVA(va.Name, "attached after the restart", time.Minute, func(va *storagev1.VolumeAttachment) bool {
		return va.Status.Attached && va.Status.AttachError == nil
	})
	if v, _ := e.driver.Volume(handle); len(v.Attachments) != 1 {
		t.Errorf("backend attachments = %+v, want exactly one", v.Attachments)
	}
	t.Logf("ControllerPublishVolume calls across the restart: %d", e.driver.Calls("ControllerPublishVolume"))

	e.deletePod("app")
	e.waitVAGone(va.Name)
	if v, _ := e.driver.Volume(handle); len(v.Attachments) != 0 {
		t.Errorf("backend attachments after detach = %+v", v.Attachments)
	}
	e.releasePV("data", pv)
}

// TestRestartMidUnpublish: the hub stops while ControllerUnpublishVolume is
// held; the new hub finishes the detach and the VolumeAttachment goes away.
func TestRestartMidUnpublish(t *testing.T) {
	e := newEnv(t, "restartdet", fakedriver.Options{Attach: true})
	e.registerNode()
	e.startHub()
	pv, handle := e.volume("data")
	e.pod("app", "data")
	va := e.va(pv)
	e.waitVA(va.Name, "attached", time.Minute, func(va *storagev1.VolumeAttachment) bool { return va.Status.Attached })

	gate := e.driver.Gate("ControllerUnpublishVolume")
	e.deletePod("app")
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	if err := gate.WaitArrived(ctx); err != nil {
		e.dump(va.Name)
		t.Fatal(err)
	}
	if err := e.hub.Stop(); err != nil {
		t.Fatalf("stopping the hub with a call in flight: %v", err)
	}
	e.startHub()
	gate.Release()
	e.waitVAGone(va.Name)
	if v, _ := e.driver.Volume(handle); len(v.Attachments) != 0 {
		t.Errorf("backend attachments after detach = %+v", v.Attachments)
	}
	e.releasePV("data", pv)
}
