package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every file in manifests/examples/ is accepted by the API server as written
// (server-side dry run: schema, defaulting and admission, nothing created).
func testExamplesValid(t *testing.T) {
	ns := newNamespace(t, "examples")
	files, err := filepath.Glob(filepath.Join(repoRoot(), "manifests", "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	kubectl := filepath.Join(os.Getenv("HOME"), ".cache/csi-hub/k8s-v1.34.4/bin/kubectl")
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
