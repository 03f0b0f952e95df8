package swap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/internal/checkout"
)

func helmBin(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(checkout.Root(), "hack", "ensure-helm.sh"), "--bin-dir").Output()
	if err != nil {
		t.Fatalf("ensure-helm.sh --bin-dir: %v", err)
	}
	bin := filepath.Join(strings.TrimSpace(string(out)), "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("helm is not built (run `make test-deps`): %v", err)
	}
	return bin
}

func helm(t *testing.T, args ...string) string {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin(t), append(args, "--kubeconfig", kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestHelmInstall installs charts/csi-hub as README's "Install with Helm" says,
// runs the volume story (provision, attach, mount, snapshot, restore, delete) and
// uninstalls it.
func TestHelmInstall(t *testing.T) {
	needCluster(t)
	ns := "helm-story"
	helm(t, "install", "csi-hub", filepath.Join(checkout.Root(), "charts", "csi-hub"),
		"--namespace", "csi-hub", "--create-namespace", "--wait", "--timeout", "4m",
		"--set", "image.hub.repository=csi-hub.local/csi-hub", "--set", "image.hub.tag=dev",
		"--set", "image.plugin.repository=csi-hub.local/csi-hub-plugin", "--set", "image.plugin.tag=dev")
	uninstalled := false
	t.Cleanup(func() {
		kcErr(t, "", "delete", "namespace", ns, "--wait=true", "--timeout=3m")
		if !uninstalled {
			helm(t, "uninstall", "csi-hub", "--namespace", "csi-hub", "--wait")
		}
		kcErr(t, "", "delete", "namespace", "csi-hub", "--wait=true", "--timeout=3m")
	})
	if got := helm(t, "list", "--namespace", "csi-hub", "-q"); strings.TrimSpace(got) != "csi-hub" {
		t.Fatalf("helm list: %q", got)
	}
	eventually(t, 2*time.Minute, driverName, "get", "csinode", kubeletNodeName, "-o", "jsonpath={.spec.drivers[*].name}")
	kc(t, "create", "namespace", ns)
	// The chart's default StorageClass and VolumeSnapshotClass (csi-hub).
	claimAndPod(t, ns, "data", "csi-hub", "", "echo installed-with-helm > /data/msg")
	snapshot(t, ns, "snap", "data", "csi-hub")
	claimAndPod(t, ns, "restored", "csi-hub", "snap", "true")
	if got := podSays(t, ns, "restored"); got != "installed-with-helm" {
		t.Errorf("restored volume reads %q", got)
	}
	kc(t, "-n", ns, "delete", "volumesnapshot", "snap", "--wait=true")
	deleteClaim(t, ns, "restored")
	deleteClaim(t, ns, "data")

	helm(t, "uninstall", "csi-hub", "--namespace", "csi-hub", "--wait")
	uninstalled = true
	for _, what := range []string{"deployment/csi-hub-controller", "daemonset/csi-hub-node"} {
		if out, err := kcErr(t, "", "-n", "csi-hub", "get", what); err == nil {
			t.Errorf("%s still exists after helm uninstall: %s", what, out)
		}
	}
	for _, what := range []string{"csidriver/" + driverName, "storageclass/csi-hub", "clusterrole/csi-hub-controller"} {
		if out, err := kcErr(t, "", "get", what); err == nil {
			t.Errorf("%s still exists after helm uninstall: %s", what, out)
		}
	}
}
