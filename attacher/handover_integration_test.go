package attacher_test

import (
	"slices"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/attacher"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// officialAttacher runs the upstream external-attacher against the env's
// driver socket and cluster. It returns a stop function; t.Cleanup stops it too.
func officialAttacher(t *testing.T, e *env) (stop func()) {
	t.Helper()
	return e.c.StartSidecar(t, "attacher", "--csi-address="+e.socket,
		"--retry-interval-start=100ms", "--retry-interval-max=2s", "--v=3")
}

// TestHandoverWithOfficialAttacher proves csi-hub speaks the sidecar's object
// protocol: what csi-hub attached, the official external-attacher detaches
// (finalizers, node-id, PV finalizer), and what the official one attached,
// csi-hub leaves alone and later detaches. The objects each leaves behind are
// the same.
func TestHandoverWithOfficialAttacher(t *testing.T) {
	e := newEnv(t, "handover", fakedriver.Options{Attach: true})
	e.registerNode()
	finalizer := attacher.FinalizerName(e.name)

	// csi-hub attaches, then the official sidecar takes over and detaches.
	e.startHub()
	pv1, h1 := e.volume("one")
	e.pod("app1", "one")
	va1 := e.va(pv1)
	byHub := e.waitVA(va1.Name, "attached by csi-hub", time.Minute, attached)
	if err := e.hub.Stop(); err != nil {
		t.Fatal(err)
	}
	stopOfficial := officialAttacher(t, e)
	e.deletePod("app1")
	e.waitVAGone(va1.Name)
	if v, _ := e.driver.Volume(h1); len(v.Attachments) != 0 {
		t.Errorf("the official attacher did not unpublish csi-hub's attachment: %+v", v.Attachments)
	}
	e.releasePV("one", pv1) // the official one removes csi-hub's PV finalizer

	// The official sidecar attaches, then csi-hub takes over and detaches.
	pv2, h2 := e.volume("two")
	e.pod("app2", "two")
	va2 := e.va(pv2)
	byOfficial := e.waitVA(va2.Name, "attached by the official attacher", time.Minute, attached)
	stopOfficial()

	// Same protocol footprint.
	if !slices.Contains(byOfficial.Finalizers, finalizer) || !slices.Contains(byHub.Finalizers, finalizer) {
		t.Errorf("finalizers: official %v, csi-hub %v, want both to carry %s", byOfficial.Finalizers, byHub.Finalizers, finalizer)
	}
	if byOfficial.Annotations[attacher.NodeIDAnnotation] != byHub.Annotations[attacher.NodeIDAnnotation] {
		t.Errorf("node-id annotation: official %q, csi-hub %q",
			byOfficial.Annotations[attacher.NodeIDAnnotation], byHub.Annotations[attacher.NodeIDAnnotation])
	}
	if len(byOfficial.Status.AttachmentMetadata) != len(byHub.Status.AttachmentMetadata) ||
		byOfficial.Status.AttachError != nil || byHub.Status.AttachError != nil {
		t.Errorf("status: official %+v, csi-hub %+v", byOfficial.Status, byHub.Status)
	}

	publishes := e.driver.Calls("ControllerPublishVolume")
	e.startHub()
	time.Sleep(2 * time.Second) // give csi-hub the chance to do something needless
	if n := e.driver.Calls("ControllerPublishVolume"); n != publishes {
		t.Errorf("csi-hub re-published a volume the official attacher had attached (%d calls)", n-publishes)
	}
	if w := e.hub.Steps.Writes(); len(w) != 0 {
		t.Errorf("csi-hub wrote %v to objects already in their wanted state", w)
	}
	e.deletePod("app2")
	e.waitVAGone(va2.Name)
	if v, _ := e.driver.Volume(h2); len(v.Attachments) != 0 {
		t.Errorf("csi-hub did not unpublish the official attacher's attachment: %+v", v.Attachments)
	}
	e.releasePV("two", pv2)
}
