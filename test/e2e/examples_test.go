package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csi-hub/csi-hub/internal/checkout"
)

// Every file in manifests/examples/ is accepted by the API server as written
// (server-side dry run: schema, defaulting and admission, nothing created).
func testExamplesValid(t *testing.T) {
	ns := newNamespace(t, "examples")
	files, err := filepath.Glob(filepath.Join(checkout.Root(), "manifests", "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	kubectl := kubectlPath(t)
	for _, f := range files {
		out, err := exec.Command(kubectl, "--kubeconfig", kubeconfigPath, "-n", ns, "apply", "--dry-run=server", "-f", f).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", filepath.Base(f), err, out)
			continue
		}
		if !strings.Contains(string(out), "(server dry run)") {
			t.Errorf("%s: unexpected kubectl output %s", filepath.Base(f), out)
		}
	}
}

// manifests/nvme/ is accepted by the API server as a change of the running
// deployment (server-side dry run: nothing changes; the NVMe/TCP transport
// itself is proven in the qemu VM, test/vm).
func testNVMeVariantValid(t *testing.T) {
	out, err := exec.Command(kubectlPath(t), "--kubeconfig", kubeconfigPath, "apply", "--dry-run=server",
		"-k", filepath.Join(checkout.Root(), "manifests", "nvme")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -k manifests/nvme: %v\n%s", err, out)
	}
	for _, want := range []string{"deployment.apps/csi-hub-controller configured (server dry run)", "daemonset.apps/csi-hub-node configured (server dry run)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl output lacks %q:\n%s", want, out)
		}
	}
}
