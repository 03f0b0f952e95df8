package swap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/internal/checkout"
)

const poolDir = "/var/lib/csi-hub/pool"

// classicOverlay is the classic deployment as this machine runs it: the images of
// csi-hub's build, and the stand-ins testdata/standins.yaml names.
func classicOverlay(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root := checkout.Root()
	standins, err := os.ReadFile(filepath.Join(root, "test", "swap", "testdata", "standins.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return overlayIn(t, dir, `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- `+rel(t, dir, filepath.Join(root, "test", "swap", "testdata", "classic"))+`
patches:
- path: standins.yaml
images:
- {name: ghcr.io/csi-hub/csi-hub, newName: csi-hub.local/csi-hub, newTag: dev}
- {name: ghcr.io/csi-hub/csi-hub-plugin, newName: csi-hub.local/csi-hub-plugin, newTag: dev}
`, map[string]string{"standins.yaml": string(standins)})
}

// swappedOverlay is what an operator writes: their driver's kustomization plus
// csi-hub's component (and csi-hub's image of this build).
func swappedOverlay(t *testing.T, classic string) string {
	t.Helper()
	dir := t.TempDir()
	return overlayIn(t, dir, `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- `+rel(t, dir, classic)+`
components:
- `+rel(t, dir, filepath.Join(checkout.Root(), "manifests", "components", "replace-sidecars"))+`
images:
- {name: ghcr.io/csi-hub/csi-hub, newName: csi-hub.local/csi-hub, newTag: dev}
`, nil)
}

func overlayIn(t *testing.T, dir, kustomization string, files map[string]string) string {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rollout applies a kustomization and waits for the driver's pods to run it and
// the kubelet to list the driver on the node.
func rollout(t *testing.T, dir string, wantControllerContainers ...string) {
	t.Helper()
	kc(t, "apply", "-k", dir)
	kc(t, "-n", classicNS, "rollout", "status", "--timeout=3m", "deployment/blockcsi-controller")
	kc(t, "-n", classicNS, "rollout", "status", "--timeout=3m", "daemonset/blockcsi-node")
	// Recreate: the old pod is gone before the new one starts; wait until only the new one is left.
	eventually(t, 2*time.Minute, strings.Join(wantControllerContainers, " "),
		"-n", classicNS, "get", "pods", "-l", "app=blockcsi-controller", "-o", "jsonpath={.items[*].spec.containers[*].name}")
	eventually(t, 2*time.Minute, driverName, "get", "csinode", kubeletNodeName, "-o", "jsonpath={.spec.drivers[*].name}")
}

func backingFile(t *testing.T, ns, claim string) string {
	t.Helper()
	pv := strings.TrimSpace(kc(t, "-n", ns, "get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}"))
	handle := strings.TrimSpace(kc(t, "get", "pv", pv, "-o", "jsonpath={.spec.csi.volumeHandle}"))
	return filepath.Join(poolDir, handle+".img")
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestSwapSidecars(t *testing.T) {
	needCluster(t)
	classic := classicOverlay(t)
	swapped := swappedOverlay(t, classic)
	ns := "swap"
	kc(t, "create", "namespace", ns)
	t.Cleanup(func() {
		kcErr(t, "", "delete", "namespace", ns, "--wait=true", "--timeout=3m")
		kcErr(t, "", "delete", "-k", classic, "--ignore-not-found", "--wait=true", "--timeout=3m")
		kcErr(t, "", "delete", "-k", swapped, "--ignore-not-found", "--wait=true", "--timeout=3m")
	})
	sidecars := []string{"blockcsi-plugin", "csi-provisioner", "csi-attacher", "csi-snapshotter", "csi-resizer"}

	// 1. The classic deployment: the official sidecars do the work.
	rollout(t, classic, sidecars...)
	claimAndPod(t, ns, "by-sidecars", "blockcsi", "", "echo written-under-the-sidecars > /data/msg")
	snapshot(t, ns, "snap-by-sidecars", "by-sidecars", "blockcsi")
	sidecarVolume := backingFile(t, ns, "by-sidecars")

	// 2. The component swaps csi-hub in: two containers, and what the sidecars made keeps working.
	rollout(t, swapped, "csi-hub", "blockcsi-plugin")
	// livenessprobe's job: the driver containers' probes call :9808/healthz in each pod.
	for _, app := range []string{"blockcsi-controller", "blockcsi-node"} {
		pod := strings.TrimSpace(kc(t, "-n", classicNS, "get", "pods", "-l", "app="+app, "-o", "jsonpath={.items[0].metadata.name}"))
		// The pod counts as rolled out once its containers start; csi-hub listens
		// after it has reached the driver.
		deadline := time.Now().Add(time.Minute)
		for {
			out, err := kcErr(t, "", "get", "--raw", "/api/v1/namespaces/"+classicNS+"/pods/"+pod+":9808/proxy/healthz")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				logs, _ := kcErr(t, "", "-n", classicNS, "logs", pod, "-c", "csi-hub", "--tail=30")
				t.Fatalf("%s: no /healthz on :9808 after a minute: %v %s\ncsi-hub's log:\n%s", pod, err, out, logs)
			}
			time.Sleep(2 * time.Second)
		}
	}
	kc(t, "-n", ns, "delete", "pod", "by-sidecars", "--wait=true") // csi-hub detaches the sidecars' attachment
	eventually(t, 2*time.Minute, "", "get", "volumeattachments", "-o", "jsonpath={.items[*].metadata.name}")
	claimAndPod(t, ns, "restored-by-hub", "blockcsi", "snap-by-sidecars", "true")
	if got := podSays(t, ns, "restored-by-hub"); got != "written-under-the-sidecars" {
		t.Errorf("restore of the sidecars' snapshot by csi-hub reads %q", got)
	}
	claimAndPod(t, ns, "by-hub", "blockcsi", "", "echo written-under-csi-hub > /data/msg")
	snapshot(t, ns, "snap-by-hub", "by-hub", "blockcsi")
	kc(t, "-n", ns, "delete", "volumesnapshot", "snap-by-sidecars", "--wait=true")
	kc(t, "-n", ns, "delete", "pvc", "by-sidecars", "--wait=true")
	eventually(t, 2*time.Minute, "", "get", "pv", "-o", "jsonpath={.items[?(@.spec.claimRef.name==\"by-sidecars\")].metadata.name}")
	if exists(sidecarVolume) {
		t.Errorf("csi-hub deleted the PV the sidecars provisioned, but its backend volume %s remains", sidecarVolume)
	}
	hubVolume := backingFile(t, ns, "by-hub")

	// 3. And back: the sidecars take over what csi-hub made.
	rollout(t, classic, sidecars...)
	for _, c := range strings.Fields(kc(t, "-n", classicNS, "get", "pods", "-l", "app=blockcsi-controller", "-o", "jsonpath={.items[*].spec.containers[*].name}")) {
		if c == "csi-hub" {
			t.Fatal("csi-hub still runs after the swap back")
		}
	}
	claimAndPod(t, ns, "restored-by-sidecars", "blockcsi", "snap-by-hub", "true")
	if got := podSays(t, ns, "restored-by-sidecars"); got != "written-under-csi-hub" {
		t.Errorf("restore of csi-hub's snapshot by the sidecars reads %q", got)
	}
	kc(t, "-n", ns, "delete", "pod", "by-hub", "--wait=true")
	kc(t, "-n", ns, "delete", "volumesnapshot", "snap-by-hub", "--wait=true")
	deleteClaim(t, ns, "by-hub")
	if exists(hubVolume) {
		t.Errorf("the sidecars deleted the PV csi-hub provisioned, but its backend volume %s remains", hubVolume)
	}
	deleteClaim(t, ns, "restored-by-hub")
	deleteClaim(t, ns, "restored-by-sidecars")
	left := strings.Fields(kc(t, "get", "pv", "-o", "jsonpath={.items[*].metadata.name}"))
	if len(left) > 0 {
		t.Errorf("PVs left after deleting every claim: %v", left)
	}
	files, _ := filepath.Glob(filepath.Join(poolDir, "*.img"))
	if len(files) > 0 {
		t.Errorf("backend volumes left in the pool: %v", files)
	}
}
