package bench

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const churn = 500

// BenchmarkScaleKill is the reliability check at scale: with N bound volumes
// present (CSI_HUB_SCALE_KILL_N, default 5000, preloaded as in BenchmarkScale),
// csi-hub (all controllers) is killed with SIGKILL while 500 claims are
// being provisioned, restarted, and must bind them all; then killed again
// while they are being deleted, restarted, and must delete them all. It
// fails on any leaked backend volume (one no PV refers to, or left after its
// PV is gone) or duplicated one (two backend volumes for one claim).
// `make scale` runs it.
func BenchmarkScaleKill(b *testing.B) {
	n := 5000
	if s := os.Getenv("CSI_HUB_SCALE_KILL_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("CSI_HUB_SCALE_KILL_N: %v", err)
		}
	}
	e := newScaleEnv(b)
	if e.qps == 10 && os.Getenv("CSI_HUB_SCALE_QPS") == "" {
		e.qps = 50 // 1,000 provisionings and deletions in a few minutes
	}
	e.preload(b, n)
	for range b.N {
		e.killOnce(b, n)
	}
}

func (e *scaleEnv) killOnce(b *testing.B, n int) {
	ctx := context.Background()
	ns, err := e.c.CreateNamespace(ctx, "churn")
	if err != nil {
		b.Fatal(err)
	}
	backend0 := len(e.driver.Volumes())
	hub := e.startProc(b, "csi-hub")
	if err := hub.waitSynced(); err != nil {
		b.Fatal(err)
	}

	// Creations, killed when a fifth of the volumes have been asked for.
	creates0 := e.driver.Calls("CreateVolume")
	start := time.Now()
	e.createClaims(ctx, b, ns, "churn", churn)
	waitCalls(b, e, hub, "CreateVolume", creates0+churn/5)
	hub.kill9()
	b.Logf("killed csi-hub after %d CreateVolume calls (%v)", e.driver.Calls("CreateVolume")-creates0, time.Since(start).Round(time.Millisecond))
	hub = e.startProc(b, "csi-hub")
	pvs, dupPVs := e.waitAllBound(b, ns, hub)
	b.Logf("all %d claims bound %v after the start, %d CreateVolume calls", churn, time.Since(start).Round(time.Second), e.driver.Calls("CreateVolume")-creates0)
	leaked, dup := e.checkBackend(b, pvs, backend0)
	dup += dupPVs
	if leaked != 0 || dup != 0 {
		b.Errorf("after the kill during creations: %d leaked, %d duplicated backend volumes", leaked, dup)
	}

	// Deletions, killed when a fifth have been deleted.
	deletes0 := e.driver.Calls("DeleteVolume")
	start = time.Now()
	if err := e.kube.CoreV1().PersistentVolumeClaims(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		b.Fatal(err)
	}
	waitCalls(b, e, hub, "DeleteVolume", deletes0+churn/5)
	hub.kill9()
	b.Logf("killed csi-hub after %d DeleteVolume calls (%v)", e.driver.Calls("DeleteVolume")-deletes0, time.Since(start).Round(time.Millisecond))
	hub = e.startProc(b, "csi-hub")
	deadline := time.Now().Add(10 * time.Minute)
	for {
		left := 0
		for pv := range pvs {
			if _, err := e.kube.CoreV1().PersistentVolumes().Get(ctx, pv, metav1.GetOptions{}); err == nil {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d PVs left 10 minutes after the deletions:\n%s", left, churn, hub.p.tail())
		}
		time.Sleep(time.Second)
	}
	b.Logf("all %d PVs deleted %v after the deletions started, %d DeleteVolume calls", churn, time.Since(start).Round(time.Second), e.driver.Calls("DeleteVolume")-deletes0)
	leaked, dup = e.checkBackend(b, nil, backend0)
	if leaked != 0 || dup != 0 {
		b.Errorf("after the kill during deletions: %d leaked, %d duplicated backend volumes", leaked, dup)
	}
	hub.p.stop()
	b.ReportMetric(float64(leaked), "leaked")
	b.ReportMetric(float64(dup), "duplicated")
}

func (sp *scaleProc) kill9() {
	_ = syscall.Kill(-sp.p.cmd.Process.Pid, syscall.SIGKILL)
	_ = sp.p.cmd.Wait()
}

func waitCalls(b *testing.B, e *scaleEnv, sp *scaleProc, method string, n int) {
	deadline := time.Now().Add(5 * time.Minute)
	for e.driver.Calls(method) < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d %s calls after 5 minutes, waiting for %d:\n%s", e.driver.Calls(method), method, n, sp.p.tail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitAllBound waits until every claim of ns is Bound and returns the PVs
// bound to claims of ns (name -> volume handle) and how many claims have more
// than one.
func (e *scaleEnv) waitAllBound(b *testing.B, ns string, sp *scaleProc) (map[string]string, int) {
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		list, err := e.kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		bound := 0
		for _, pvc := range list.Items {
			if pvc.Status.Phase == corev1.ClaimBound {
				bound++
			}
		}
		if bound == len(list.Items) && bound == churn {
			// Every PV of a claim of ns: one per claim, or some are duplicates.
			all, err := e.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
			if err != nil {
				b.Fatal(err)
			}
			pvs, perClaim := map[string]string{}, map[string]int{}
			for _, pv := range all.Items {
				if ref := pv.Spec.ClaimRef; ref != nil && ref.Namespace == ns && pv.Spec.CSI != nil {
					pvs[pv.Name] = pv.Spec.CSI.VolumeHandle
					perClaim[ref.Name]++
				}
			}
			dup := 0
			for claim, c := range perClaim {
				if c > 1 {
					dup += c - 1
					b.Logf("claim %s/%s has %d PVs", ns, claim, c)
				}
			}
			return pvs, dup
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d/%d claims bound after 10 minutes:\n%s", bound, churn, sp.p.tail())
		}
		time.Sleep(time.Second)
	}
}

// checkBackend compares the driver's volumes with the preloaded ones
// (backend0 of them, named pv-<namespace>-*) and pvs (PV name -> handle): leaked
// are backend volumes no PV refers to; duplicated are backend volume names
// (the PV name, as csi-hub asks CreateVolume) given to more than one volume,
// and handles shared by two PVs.
func (e *scaleEnv) checkBackend(b *testing.B, pvs map[string]string, backend0 int) (leaked, duplicated int) {
	handles := map[string]bool{}
	for _, h := range pvs {
		if handles[h] {
			duplicated++
			b.Logf("backend volume %s is the volume of two PVs", h)
		}
		handles[h] = true
	}
	names := map[string]int{}
	preloaded := 0
	for _, v := range e.driver.Volumes() {
		if strings.HasPrefix(v.Name, "pv-"+e.ns+"-") {
			preloaded++
			continue
		}
		names[v.Name]++
		if !handles[v.ID] {
			leaked++
			b.Logf("leaked backend volume %s (%s)", v.ID, v.Name)
		}
	}
	for name, c := range names {
		if c > 1 {
			duplicated += c - 1
			b.Logf("backend volume name %s created %d times", name, c)
		}
	}
	if preloaded != backend0 {
		b.Errorf("%d preloaded backend volumes left of %d", preloaded, backend0)
	}
	return leaked, duplicated
}
