package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/attacher"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// officialAttacher runs the upstream external-attacher (built by
// hack/ensure-sidecars.sh) against the env's driver socket and cluster.
// It returns a stop function; t.Cleanup stops it too.
func officialAttacher(t *testing.T, e *env) (stop func()) {
	t.Helper()
	out, err := exec.Command("../../hack/ensure-sidecars.sh").Output()
	if err != nil {
		t.Fatalf("hack/ensure-sidecars.sh (builds the official external-attacher): %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	bin := filepath.Join(lines[len(lines)-1], "csi-attacher")
	logPath := filepath.Join(t.TempDir(), "csi-attacher.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--csi-address="+e.socket, "--kubeconfig="+e.c.Kubeconfig,
		"--retry-interval-start=100ms", "--retry-interval-max=2s", "--v=3")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("official csi-attacher log:\n%s", tail(string(b), 40))
			}
		}
	}
	t.Cleanup(stop)
	return stop
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
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
