package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

const volumes = 100

// BenchmarkProvision100 binds 100 PVCs at the sidecars' default QPS (5, burst
// 10) and at 10 (burst 20), with csi-hub (all controllers, as deployed) and with
// the official external-provisioner given the same QPS, through the same
// counting proxy. In a five-sidecar pod the provisioner would get only a share
// of that total; here it gets all of it, its best case.
func BenchmarkProvision100(b *testing.B) {
	for _, qps := range []int{5, 10} {
		for _, who := range []string{"csi-hub", "external-provisioner"} {
			b.Run(fmt.Sprintf("qps=%d/%s", qps, who), func(b *testing.B) {
				for range b.N {
					secs, writes, rss := provisionOnce(b, who, qps)
					b.ReportMetric(secs, "s-to-bound")
					b.ReportMetric(writes, "writes/volume")
					b.ReportMetric(rss, "peak-RSS-MiB")
				}
			})
		}
	}
}

func provisionOnce(b *testing.B, who string, qps int) (secs, writesPerVolume, rssMiB float64) {
	b.StopTimer()
	c := cluster.Shared(b)
	ctx := context.Background()
	sock := filepath.Join(shortTempDir(b), "csi.sock")
	d := fakedriver.New(fakedriver.Options{Name: fmt.Sprintf("prov-%s-%d.csi-hub.io", who, qps), Attach: true})
	if err := d.Start(sock); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(d.StopNow)
	proxy := startProxy(b, c.RESTConfig())
	bin := csiHubBinary(b)
	if who == "external-provisioner" {
		bin = sidecarBinary(b, "provisioner")
	}
	p := startProcess(b, bin, "--csi-address="+sock, "--kubeconfig="+proxy.kubeconfig(b),
		"--kube-api-qps="+strconv.Itoa(qps), "--kube-api-burst="+strconv.Itoa(2*qps), "-v=1")

	ns, err := c.CreateNamespace(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	retain := corev1.PersistentVolumeReclaimRetain
	sc, err := c.Client.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}, Provisioner: d.Name(), ReclaimPolicy: &retain,
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	// Let the process connect and sync its informers first: start-up is not provisioning.
	time.Sleep(3 * time.Second)
	before := proxy.Writes()

	b.StartTimer()
	start := time.Now()
	for i := range volumes {
		pvc := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pvc-%03d", i), Namespace: ns},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: &sc.Name,
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		list, err := c.Client.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		bound := 0
		for _, p := range list.Items {
			if p.Status.Phase == corev1.ClaimBound {
				bound++
			}
		}
		if bound == volumes {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d/%d PVCs bound after 5 minutes; log:\n%s", who, bound, volumes, p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	secs = time.Since(start).Seconds()
	b.StopTimer()
	writes := proxy.settledWrites() - before // events are sent asynchronously; count them too
	rssMiB = p.peakRSSMiB()
	p.stop()
	if n := d.Calls("CreateVolume"); n < volumes {
		b.Fatalf("driver saw %d CreateVolume calls for %d PVCs", n, volumes)
	}
	return secs, float64(writes) / volumes, rssMiB
}

func shortTempDir(b testing.TB) string {
	dir, err := os.MkdirTemp("", "bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
