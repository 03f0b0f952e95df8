package swap

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/internal/checkout"
)

func kubectlBin(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(checkout.Root(), "hack", "ensure-k8s.sh"), "--bin-dir").Output()
	if err != nil {
		t.Fatalf("ensure-k8s.sh --bin-dir: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "kubectl")
}

// kc runs kubectl against the local cluster and returns its output; it fails the
// test when kubectl fails.
func kc(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kcErr(t, "", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func kcErr(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlBin(t), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// apply applies YAML given inline.
func apply(t *testing.T, yaml string) {
	t.Helper()
	if out, err := kcErr(t, yaml, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s\n%s", err, out, yaml)
	}
}

func rel(t *testing.T, from, to string) string {
	t.Helper()
	r, err := filepath.Rel(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitFor runs `kubectl wait` with the given condition.
func waitFor(t *testing.T, timeout time.Duration, args ...string) {
	t.Helper()
	kc(t, append([]string{"wait", "--timeout=" + timeout.String()}, args...)...)
}

// eventually polls a kubectl jsonpath until it prints want.
func eventually(t *testing.T, timeout time.Duration, want string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		out, err := kcErr(t, "", args...)
		last = strings.TrimSpace(out)
		if err == nil && last == want {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("kubectl %s: want %q, last %q after %s", strings.Join(args, " "), want, last, timeout)
}

// claimAndPod creates a claim of class and a Pod that runs script with the volume at /data.
func claimAndPod(t *testing.T, ns, claim, class, dataSource, script string) {
	t.Helper()
	ds := ""
	if dataSource != "" {
		ds = "  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: " + dataSource + "}\n"
	}
	apply(t, `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: `+claim+`, namespace: `+ns+`}
spec:
  storageClassName: `+class+`
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
`+ds+`---
apiVersion: v1
kind: Pod
metadata: {name: `+claim+`, namespace: `+ns+`}
spec:
  terminationGracePeriodSeconds: 0
  restartPolicy: Never
  containers:
  - name: app
    image: `+busyboxImage+`
    command: [sh, -c, '`+script+`; sync; sleep 3600']
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: `+claim+`}}
`)
	waitFor(t, 3*time.Minute, "-n", ns, "--for=condition=Ready", "pod/"+claim)
}

func snapshot(t *testing.T, ns, name, claim, class string) {
	t.Helper()
	apply(t, `apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: `+name+`, namespace: `+ns+`}
spec:
  volumeSnapshotClassName: `+class+`
  source: {persistentVolumeClaimName: `+claim+`}
`)
	eventually(t, 2*time.Minute, "true", "-n", ns, "get", "volumesnapshot", name, "-o", "jsonpath={.status.readyToUse}")
}

// deleteClaim deletes the Pod and the claim, and waits until the PV (with its
// backend volume, reclaim policy Delete) is gone.
func deleteClaim(t *testing.T, ns, claim string) {
	t.Helper()
	pv := strings.TrimSpace(kc(t, "-n", ns, "get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}"))
	kc(t, "-n", ns, "delete", "pod", claim, "--ignore-not-found", "--wait=true")
	kc(t, "-n", ns, "delete", "pvc", claim, "--wait=true")
	if pv != "" {
		waitFor(t, 3*time.Minute, "--for=delete", "pv/"+pv)
	}
}

// podSays reads /data/msg in the claim's Pod.
func podSays(t *testing.T, ns, pod string) string {
	t.Helper()
	return strings.TrimSpace(kc(t, "-n", ns, "exec", pod, "--", "cat", "/data/msg"))
}
