package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/csi-hub/csi-hub/internal/checkout"
)

// ErrPrerequisite marks start-up failures caused by the machine rather than by
// the code under test: not root, no etcd, binaries that cannot be built. Tests
// may skip on it (outside CI); every other error is a real failure.
var ErrPrerequisite = errors.New("test cluster prerequisite missing")

// EnvK8sBin names a directory of prebuilt Kubernetes binaries; when set, the
// build script is not run.
const EnvK8sBin = "CSI_HUB_K8S_BIN"

// etcdPath finds etcd; the Debian package puts it in /usr/bin.
func etcdPath() (string, error) {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: etcd not found in PATH (install the Debian package etcd-server: make deps)", ErrPrerequisite)
}

// EnsureBinaries returns the directory holding the named Kubernetes binaries
// (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl),
// building the missing ones first; for tests that run e.g. a real kubelet.
// Honors CSI_HUB_K8S_BIN. Errors wrap ErrPrerequisite.
func EnsureBinaries(names ...string) (string, error) {
	o := Options{}
	o.setDefaults()
	return k8sBinDir(o.Logf, names...)
}

// k8sBinDir returns a directory holding the requested Kubernetes binaries,
// building missing ones with hack/ensure-k8s.sh.
func k8sBinDir(logf func(string, ...any), names ...string) (string, error) {
	if dir := os.Getenv(EnvK8sBin); dir != "" {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
				return "", fmt.Errorf("%w: %s=%s lacks %s: %v", ErrPrerequisite, EnvK8sBin, dir, n, err)
			}
		}
		return dir, nil
	}
	return runEnsureScript(logf, "ensure-k8s.sh", names...)
}

// snapshotDir returns the directory holding bin/snapshot-controller and the
// CRD manifests, building and copying them if missing.
func snapshotDir(logf func(string, ...any)) (string, error) {
	return runEnsureScript(logf, "ensure-snapshot-controller.sh")
}

// runEnsureScript runs a hack/ensure-*.sh script; by their convention the last
// line of standard output is the directory they filled.
func runEnsureScript(logf func(string, ...any), script string, args ...string) (string, error) {
	root, err := checkout.Find()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrPrerequisite, err)
	}
	path := filepath.Join(root, "hack", script)
	logf("running %s %s (builds only missing binaries; a cold build takes minutes)", path, strings.Join(args, " "))
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Dir = root
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s failed: %v\n%s", ErrPrerequisite, script, err, tail(stderr.String(), 40))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%s printed %q, not a directory", script, dir)
	}
	return dir, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
