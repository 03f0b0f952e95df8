package e2e

import (
	"context"
	"os"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// After the tests deleted everything they created: no PV, no VolumeSnapshotContent,
// no backing file in the pool, no CSI mount, no loop device over the pool.
func testDeletingEverythingLeavesNothing(t *testing.T) {
	needCluster(t)
	ctx := context.Background()
	nss, err := env.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss.Items {
		if strings.HasPrefix(ns.Name, "e2e-") && ns.DeletionTimestamp == nil {
			deleteEverything(t, ns.Name)
		}
	}
	waitFor(t, "no PersistentVolume left", shortWait, func(ctx context.Context) (bool, error) {
		pvs, err := env.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		return err == nil && len(pvs.Items) == 0, err
	})
	waitFor(t, "no VolumeSnapshotContent left", shortWait, func(ctx context.Context) (bool, error) {
		c, err := env.snap.SnapshotV1().VolumeSnapshotContents().List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && len(c.Items) == 0, err
	})
	vas, err := env.kube.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
	if err != nil || len(vas.Items) > 0 {
		t.Errorf("VolumeAttachments left: %v %d", err, len(vas.Items))
	}
	entries, err := os.ReadDir(poolDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".img") {
			t.Errorf("backing file left in the pool: %s/%s", poolDir, e.Name())
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, "kubernetes.io~csi") || strings.Contains(line, "plugins/kubernetes.io/csi") {
			t.Errorf("CSI mount left: %s", line)
		}
	}
	for _, b := range boundLoopDevices(t) {
		if strings.HasPrefix(b.file, poolDir+"/") || inVanishedPool(b.file) {
			t.Errorf("loop device left: %s -> %s", b.dev, b.file)
		}
	}
}

// The hub ran under the least-privilege RBAC of manifests/ for the whole
// suite: a verb missing there shows up as a "forbidden" error in its log.
func testHubNeverForbidden(t *testing.T) {
	needCluster(t)
	ctx := context.Background()
	pods, err := env.kube.CoreV1().Pods(hubNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=controller"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("controller pod: %v", err)
	}
	for _, pod := range pods.Items {
		rc, err := env.kube.CoreV1().Pods(hubNamespace).GetLogs(pod.Name, &v1.PodLogOptions{Container: "csi-hub"}).Stream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		buf := make([]byte, 64<<10)
		for {
			n, err := rc.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		rc.Close()
		for _, line := range strings.Split(b.String(), "\n") {
			if strings.Contains(line, "forbidden") {
				t.Errorf("csi-hub was refused by RBAC: %s", line)
			}
		}
	}
}
