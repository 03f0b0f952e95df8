package bench

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"

	"github.com/csi-hub/csi-hub/internal/testutil"
)

const inUsePods = 10000

// BenchmarkInUsePods10k measures what --handle-volume-inuse-error costs in
// memory with 10,000 Pods in the cluster: csi-hub (resizer only) and the
// official external-resizer, each once with the flag off (its baseline: no
// Pod informer) and once with the flag on (its default), all four running
// side by side against the same API server and driver. The sidecar holds
// every Pod whole; csi-hub keeps a slim copy (name, phase, claim names).
// Target: csi-hub's increase <= 1/5 of the sidecar's.
func BenchmarkInUsePods10k(b *testing.B) {
	for range b.N {
		inUseOnce(b)
	}
}

func inUseOnce(b *testing.B) {
	b.StopTimer()
	c := cluster.Shared(b)
	ctx := context.Background()
	ns, err := c.CreateNamespace(ctx, "inuse")
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	createPods(b, c, ns, inUsePods)
	b.Logf("created %d Pods in %v", inUsePods, time.Since(start).Round(time.Second))
	defer func() {
		zero := int64(0)
		_ = c.Client.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	}()

	sock := filepath.Join(shortTempDir(b), "csi.sock")
	d := fakedriver.New(fakedriver.Options{Name: "inuse.csi-hub.io"})
	if err := d.Start(sock); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(d.StopNow)
	hubBin, rszBin := csiHubBinary(b), sidecarBinary(b, "resizer")
	common := []string{"--csi-address=" + sock, "--kubeconfig=" + c.Kubeconfig, "-v=1"}
	type run struct {
		name string
		p    *process
	}
	b.StartTimer()
	started := time.Now()
	runs := []run{
		{"csi-hub flag off", startProcess(b, hubBin, append(common, "--controllers=resizer", "--handle-volume-inuse-error=false")...)},
		{"csi-hub flag on", startProcess(b, hubBin, append(common, "--controllers=resizer")...)},
		{"external-resizer flag off", startProcess(b, rszBin, append(common, "--handle-volume-inuse-error=false")...)},
		{"external-resizer flag on", startProcess(b, rszBin, common...)},
	}
	// Settle: at least 30s for every process to list what it watches, then
	// until the RSS stops moving (two samples 5s apart within 1%), at most 2 minutes.
	deadline := time.Now().Add(2 * time.Minute)
	prev := make([]float64, len(runs))
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Second)
		stable := true
		for i, r := range runs {
			if r.p.cmd.ProcessState != nil || !r.p.alive() {
				b.Fatalf("%s exited:\n%s", r.name, r.p.tail())
			}
			now := r.p.rssMiB("VmRSS:")
			stable = stable && prev[i] > 0 && abs(now-prev[i]) <= 0.01*prev[i]
			prev[i] = now
		}
		if stable && time.Since(started) > 30*time.Second {
			break
		}
	}
	b.StopTimer()
	figs := map[string][2]float64{}
	for _, r := range runs {
		figs[r.name] = [2]float64{r.p.rssMiB("VmRSS:"), r.p.rssMiB("VmHWM:")}
		b.Logf("%-26s RSS %6.1f MiB, peak %6.1f MiB", r.name, figs[r.name][0], figs[r.name][1])
	}
	hubInc := figs["csi-hub flag on"][0] - figs["csi-hub flag off"][0]
	rszInc := figs["external-resizer flag on"][0] - figs["external-resizer flag off"][0]
	hubPeakInc := figs["csi-hub flag on"][1] - figs["csi-hub flag off"][1]
	rszPeakInc := figs["external-resizer flag on"][1] - figs["external-resizer flag off"][1]
	b.Logf("with %d Pods: RSS increase csi-hub %.1f MiB, external-resizer %.1f MiB (ratio %.2f); peak increase %.1f vs %.1f MiB (ratio %.2f)",
		inUsePods, hubInc, rszInc, hubInc/rszInc, hubPeakInc, rszPeakInc, hubPeakInc/rszPeakInc)
	b.ReportMetric(figs["csi-hub flag on"][0], "hub-RSS-MiB")
	b.ReportMetric(hubInc, "hub-increase-MiB")
	b.ReportMetric(figs["external-resizer flag on"][0], "resizer-RSS-MiB")
	b.ReportMetric(rszInc, "resizer-increase-MiB")
	b.ReportMetric(hubInc/rszInc, "increase-ratio")
}

// createPods creates n Pods shaped like a StatefulSet's (two containers with
// env, probes and resources, a claim, a ConfigMap and a projected token
// volume), never scheduled.
func createPods(b *testing.B, c *cluster.Cluster, ns string, n int) {
	cfg := rest.CopyConfig(c.RESTConfig())
	cfg.QPS, cfg.Burst = 5000, 10000
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	// The namespace's default ServiceAccount comes from kube-controller-manager.
	for i := 0; ; i++ {
		if _, err := kube.CoreV1().ServiceAccounts(ns).Get(context.Background(), "default", metav1.GetOptions{}); err == nil {
			break
		} else if i > 300 {
			b.Fatalf("no default ServiceAccount in %s: %v", ns, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if _, err := kube.CoreV1().Pods(ns).Create(context.Background(), testutil.InUsePod(int(i)), metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("creating Pods: %v", err)
	}
}

func (p *process) alive() bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	return err == nil && !strings.Contains(string(b), ") Z ")
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
