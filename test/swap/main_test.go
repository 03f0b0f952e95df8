package swap

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/internal/checkout"
	"github.com/csi-hub/csi-hub/internal/testutil"
)

const (
	kubeconfig      = "/var/lib/csi-hub-cluster/admin.kubeconfig"
	containerdSock  = "/run/csi-hub-cluster/containerd/containerd.sock"
	hubImage        = "csi-hub.local/csi-hub:dev"
	pluginImage     = "csi-hub.local/csi-hub-plugin:dev"
	busyboxImage    = "csi-hub.local/busybox:dev"
	driverName      = "block.csi-hub.io"
	classicNS       = "blockcsi"
	kubeletNodeName = "csi-hub-node"
)

// sidecarImages are the official sidecars of the classic deployment, under the
// names testdata/classic/ uses, and the ensure-sidecars.sh name that builds each.
var sidecarImages = []struct{ ref, sidecar, binary string }{
	{"registry.k8s.io/sig-storage/csi-provisioner:v6.4.0", "provisioner", "csi-provisioner"},
	{"registry.k8s.io/sig-storage/csi-attacher:v4.13.0", "attacher", "csi-attacher"},
	{"registry.k8s.io/sig-storage/csi-snapshotter:v8.7.0", "snapshotter", "csi-snapshotter"},
	{"registry.k8s.io/sig-storage/csi-resizer:v2.3.0", "resizer", "csi-resizer"},
}

var skipReason string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	if testutil.UnitMode() {
		skipReason = "unit mode (make unit / go test -short): the swap tests bring up the local kubelet cluster"
		fmt.Fprintln(os.Stderr, "!!! test/swap: SKIPPING every cluster test:", skipReason)
		return m.Run()
	}
	if os.Geteuid() != 0 {
		skipReason = "the swap tests run a kubelet, containerd, mounts and loop devices: they need root"
		fmt.Fprintln(os.Stderr, "!!! test/swap: SKIPPING every cluster test:", skipReason)
		return m.Run()
	}
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "test/swap: "+f+"\n", a...) }
	unlock, err := testutil.LockLocalCluster(logf)
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer unlock()
	start := time.Now()
	// A cluster left up (make cluster-up, an interrupted run) has csi-hub deployed:
	// these tests start from one without it.
	if err := script("down.sh", "--quiet"); err != nil {
		logf("could not take down a cluster left up: %v", err)
		return 1
	}
	if err := script("up.sh", "--no-deploy"); err != nil {
		logf("cluster did not come up: %v", err)
		_ = script("down.sh")
		return 1
	}
	logf("cluster up (nothing deployed) in %.0fs", time.Since(start).Seconds())
	code := 1
	if err := importSidecarImages(); err != nil {
		logf("%v", err)
	} else {
		code = m.Run()
	}
	if err := script("down.sh"); err != nil {
		logf("FAIL: teardown: %v", err)
		code = 1
	}
	return code
}

func script(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(checkout.Root(), "hack", "cluster", name), args...)
	cmd.Dir = checkout.Root()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// importSidecarImages wraps the sidecar binaries `make test-deps` built into
// images and imports them into the cluster's containerd.
func importSidecarImages() error {
	var list []string
	for _, s := range sidecarImages {
		out, err := exec.Command(filepath.Join(checkout.Root(), "hack", "ensure-sidecars.sh"), "--bin-dir", s.sidecar).Output()
		if err != nil {
			return fmt.Errorf("ensure-sidecars.sh --bin-dir %s: %w", s.sidecar, err)
		}
		bin := filepath.Join(strings.TrimSpace(string(out)), s.binary)
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("the official %s is not built (run `make test-deps`): %w", s.binary, err)
		}
		list = append(list, s.ref+"="+bin)
	}
	dir, err := os.MkdirTemp("", "swap-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "run", "./hack/imagebuild", "-out", dir, "-prebuilt", strings.Join(list, ","))
	cmd.Dir = checkout.Root()
	cmd.Stderr = os.Stderr
	refs, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("imagebuild -prebuilt: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(refs)), "\n") {
		_, file, _ := strings.Cut(line, "\t")
		out, err := exec.Command("ctr", "--address", containerdSock, "-n", "k8s.io", "images", "import", file).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr images import %s: %v: %s", file, err, out)
		}
	}
	return nil
}

func needCluster(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip("!!! SKIPPING: " + skipReason)
	}
}
