package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// BenchmarkAttach100 attaches 100 VolumeAttachments at QPS 5 (burst 10), once
// with csi-hub (all controllers running, as deployed) and once with the
// official external-attacher, through the same counting proxy.
func BenchmarkAttach100(b *testing.B) {
	for _, who := range []string{"csi-hub", "external-attacher"} {
		b.Run(who, func(b *testing.B) {
			for range b.N {
				secs, writes, rss := attachOnce(b, who, 5)
				b.ReportMetric(secs, "s-to-attached")
				b.ReportMetric(writes, "writes/attachment")
				b.ReportMetric(rss, "peak-RSS-MiB")
			}
		})
	}
}

func attachOnce(b *testing.B, who string, qps int) (secs, writesPer, rssMiB float64) {
	b.StopTimer()
	c := cluster.Shared(b)
	ctx := context.Background()
	sock := filepath.Join(shortTempDir(b), "csi.sock")
	d := fakedriver.New(fakedriver.Options{Name: "attach-" + who + ".csi-hub.io", Attach: true})
	if err := d.Start(sock); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(d.StopNow)

	// A node that kube-controller-manager leaves alone (no controller-managed
	// attach/detach annotation), so the only actor on these attachments is the
	// process under measurement.
	node := fmt.Sprintf("bench-%s-%d", who, time.Now().UnixNano())
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Client.StorageV1().CSINodes().Create(ctx, &storagev1.CSINode{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec:       storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: d.Name(), NodeID: d.NodeID()}}},
	}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	handles := createBackendVolumes(b, sock, volumes)
	var pvs []string
	for i, h := range handles {
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-pv-%03d", node, i)},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
					Driver: d.Name(), VolumeHandle: h, FSType: "ext4"}},
			},
		}
		if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		pvs = append(pvs, pv.Name)
	}

	proxy := startProxy(b, c.RESTConfig())
	args := []string{"--csi-address=" + sock, "--kubeconfig=" + proxy.kubeconfig(b),
		"--kube-api-qps=" + strconv.Itoa(qps), "--kube-api-burst=" + strconv.Itoa(2*qps), "-v=1"}
	var p *process
	if who == "csi-hub" {
		p = startProcess(b, csiHubBinary(b), args...)
	} else {
		p = startProcess(b, sidecarBinary(b, "attacher"), args...)
	}
	time.Sleep(3 * time.Second) // connect and sync informers: start-up is not attaching
	before := proxy.Writes()

	b.StartTimer()
	start := time.Now()
	for _, pv := range pvs {
		name := pv
		va := &storagev1.VolumeAttachment{
			ObjectMeta: metav1.ObjectMeta{Name: "va-" + pv},
			Spec: storagev1.VolumeAttachmentSpec{Attacher: d.Name(), NodeName: node,
				Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &name}},
		}
		if _, err := c.Client.StorageV1().VolumeAttachments().Create(ctx, va, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		list, err := c.Client.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		attached := 0
		for _, va := range list.Items {
			if va.Spec.NodeName == node && va.Status.Attached {
				attached++
			}
		}
		if attached == volumes {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d/%d attached after 5 minutes; log:\n%s", who, attached, volumes, p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	secs = time.Since(start).Seconds()
	b.StopTimer()
	writes := proxy.settledWrites() - before
	rssMiB = p.peakRSSMiB()
	p.stop()
	if n := d.Calls("ControllerPublishVolume"); n < volumes {
		b.Fatalf("driver saw %d ControllerPublishVolume calls for %d attachments", n, volumes)
	}
	return secs, float64(writes) / volumes, rssMiB
}

// createBackendVolumes creates n volumes in the driver directly, as if provisioned earlier.
func createBackendVolumes(b testing.TB, sock string, n int) []string {
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	client := csi.NewControllerClient(cc)
	capability := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	var handles []string
	for i := range n {
		resp, err := client.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
			Name: fmt.Sprintf("pre-%03d", i), VolumeCapabilities: []*csi.VolumeCapability{capability}})
		if err != nil {
			b.Fatal(err)
		}
		handles = append(handles, resp.GetVolume().GetVolumeId())
	}
	return handles
}
