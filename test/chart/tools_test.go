package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csi-hub/csi-hub/internal/checkout"
)

func chartDir() string { return filepath.Join(checkout.Root(), "charts", "csi-hub") }

// cachedTool returns the binary an ensure script built (asked with --bin-dir, so
// nothing is built inside a test). A missing binary fails the test
// in CI and skips it loudly elsewhere.
func cachedTool(t *testing.T, script, name string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(checkout.Root(), "hack", script), "--bin-dir").Output()
	if err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		bin := filepath.Join(strings.TrimSpace(lines[len(lines)-1]), name)
		if _, err = os.Stat(bin); err == nil {
			return bin
		}
	}
	msg := name + " is not built (run `make test-deps`): " + err.Error()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip("!!! SKIPPING: " + msg)
	return ""
}

func helm(t *testing.T) string { return cachedTool(t, "ensure-helm.sh", "helm") }

func kubectl(t *testing.T) string { return cachedTool(t, "ensure-k8s.sh", "kubectl") }

// run runs a command and returns its standard output, failing the test with its
// standard error when it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(name), strings.Join(args, " "), err)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// helm keeps its cache and config out of the user's home.
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+os.TempDir()+"/csi-hub-helm/cache",
		"HELM_CONFIG_HOME="+os.TempDir()+"/csi-hub-helm/config", "HELM_DATA_HOME="+os.TempDir()+"/csi-hub-helm/data")
	out, err := cmd.Output()
	if err != nil {
		return string(out), &cmdError{err: err, stderr: stderr.String()}
	}
	return string(out), nil
}

type cmdError struct {
	err    error
	stderr string
}

func (e *cmdError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }
