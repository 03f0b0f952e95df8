package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// SidecarBinary returns the path of csi-<name>, the official kubernetes-csi
// external-<name> sidecar (attacher or provisioner), built once per machine
// by hack/ensure-sidecars.sh from `make test-deps`. Tests run it beside
// csi-hub to show that the two hand objects over in both directions. It only
// looks the binary up: a build here could outrun the test's deadline.
func SidecarBinary(name string) (string, error) {
	dir, err := runEnsureScript(func(string, ...any) {}, "ensure-sidecars.sh", "--bin-dir", name)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "csi-"+name)
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%w: the official csi-%s is not built: run `make test-deps` (hack/ensure-sidecars.sh %s) first", ErrPrerequisite, name, name)
	}
	return bin, nil
}

// StartSidecar runs the official csi-<name> against this cluster with args
// (--kubeconfig is added). The returned stop function, also run at cleanup,
// stops it; if the test failed, the tail of its log is logged.
func (c *Cluster) StartSidecar(t testing.TB, name string, args ...string) (stop func()) {
	t.Helper()
	bin, err := SidecarBinary(name)
	if err != nil {
		t.Fatalf("official csi-%s: %v", name, err)
	}
	p, err := startProcess("csi-"+name, filepath.Join(t.TempDir(), "csi-"+name+".log"), bin,
		append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		p.stop(10 * time.Second)
		if t.Failed() {
			t.Logf("official csi-%s log:\n%s", name, p.logTail(40))
		}
	}
	t.Cleanup(stop)
	return stop
}
