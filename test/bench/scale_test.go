package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csi-hub/csi-hub/attacher"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// BenchmarkScale preloads N bound volumes of one driver (PV + PVC +
// VolumeAttachment each, a VolumeSnapshot and its content for every tenth,
// one Pod per ten claims), written without rate limit, then starts, side by
// side against the same API server and the same driver, csi-hub (all
// controllers) and the four official sidecars it replaces (provisioner,
// attacher, resizer, snapshotter), each through its own counting proxy, and
// prints per process: time from start to caches synced (csi-hub: /readyz;
// sidecars: the end of their last initial list, seen by the proxy), RSS
// at that moment, at the end of an idle minute (the steady state) and peak,
// LIST/WATCH requests at start-up, CPU seconds over the idle minute. Then it times 100 new claims to Bound and to deleted
// (backend volume gone) with N present, first with csi-hub alone as
// provisioner, then with the official external-provisioner alone.
//
// N is cumulative across the sub-benchmarks (the objects of N=1000 stay for
// N=5000), from CSI_HUB_SCALE_N (default "0,1000,5000,10000"). QPS for every
// process: CSI_HUB_SCALE_QPS (default 10, burst twice that). Idle window:
// CSI_HUB_SCALE_IDLE (default 60s). CSI_HUB_SCALE_PROFILE=dir saves csi-hub's
// heap profile once synced (heap-N.pb.gz for `go tool pprof`, heap-N.txt with
// the runtime's MemStats) to see what its resident size is made of.
// CSI_HUB_SCALE_GOGC100=1 adds a second csi-hub with GOGC=100 (Go's default;
// csi-hub's own is hub.DefaultGCPercent) to the start-up and idle figures.
//
//	go test -run '^$' -bench Scale -benchtime 1x -timeout 60m ./test/bench/
func BenchmarkScale(b *testing.B) {
	sizes := []int{0, 1000, 5000, 10000}
	if s := os.Getenv("CSI_HUB_SCALE_N"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("CSI_HUB_SCALE_N=%q: %v", s, err)
			}
			sizes = append(sizes, n)
		}
	}
	e := newScaleEnv(b)
	for _, n := range sizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			e.preload(b, n)
			for range b.N {
				e.measure(b, n)
			}
		})
	}
}

type scaleEnv struct {
	c       *cluster.Cluster
	kube    kubernetes.Interface
	snaps   snapclient.Interface
	driver  *fakedriver.Driver
	sock    string
	ns      string
	sc      string
	snapCls string
	drv     string // the driver's name
	node    string
	loaded  int
	qps     int
	idle    time.Duration
}

// scaleDriver is the driver of a scaleEnv: named after its namespace, so two
// environments in one cluster (BenchmarkScale, BenchmarkScaleKill) share no
// objects.
func scaleDriver(ns string) string { return ns + ".csi-hub.io" }

func newScaleEnv(b *testing.B) *scaleEnv {
	c := cluster.Shared(b)
	ctx := context.Background()
	e := &scaleEnv{c: c, qps: 10, idle: time.Minute}
	if s := os.Getenv("CSI_HUB_SCALE_QPS"); s != "" {
		q, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("CSI_HUB_SCALE_QPS: %v", err)
		}
		e.qps = q
	}
	if s := os.Getenv("CSI_HUB_SCALE_IDLE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("CSI_HUB_SCALE_IDLE: %v", err)
		}
		e.idle = d
	}
	if err := c.InstallSnapshotCRDs(ctx); err != nil {
		b.Fatal(err)
	}
	cfg := rest.CopyConfig(c.RESTConfig())
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit: the preload is the admin's
	var err error
	if e.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		b.Fatal(err)
	}
	if e.snaps, err = snapclient.NewForConfig(cfg); err != nil {
		b.Fatal(err)
	}
	if e.ns, err = c.CreateNamespace(ctx, "scale"); err != nil {
		b.Fatal(err)
	}
	e.drv, e.node = scaleDriver(e.ns), e.ns+"-node"
	e.sock = filepath.Join(shortTempDir(b), "csi.sock")
	e.driver = fakedriver.New(fakedriver.Options{Name: e.drv, Attach: true, TotalCapacityBytes: 1 << 50})
	if err := e.driver.Start(e.sock); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.driver.StopNow)
	policy := corev1.PersistentVolumeReclaimDelete
	sc, err := e.kube.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "scale-"}, Provisioner: e.drv, ReclaimPolicy: &policy,
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	e.sc = sc.Name
	cls, err := e.snaps.SnapshotV1().VolumeSnapshotClasses().Create(ctx, &snapv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "scale-"}, Driver: e.drv, DeletionPolicy: snapv1.VolumeSnapshotContentDelete,
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	e.snapCls = cls.Name
	// A node kube-controller-manager's attach/detach controller leaves alone
	// (no controller-managed annotation): the attachments are the attachers'.
	if _, err := e.kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: e.node}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	if _, err := e.kube.StorageV1().CSINodes().Create(ctx, &storagev1.CSINode{
		ObjectMeta: metav1.ObjectMeta{Name: e.node},
		Spec:       storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: e.drv, NodeID: e.driver.NodeID()}}},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	waitDefaultServiceAccount(b, e.kube, e.ns)
	return e
}

func waitDefaultServiceAccount(b *testing.B, kube kubernetes.Interface, ns string) {
	for i := 0; ; i++ {
		if _, err := kube.CoreV1().ServiceAccounts(ns).Get(context.Background(), "default", metav1.GetOptions{}); err == nil {
			return
		} else if i > 300 {
			b.Fatalf("no default ServiceAccount in %s: %v", ns, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// preload writes volumes [e.loaded, n) with 32 unthrottled workers.
func (e *scaleEnv) preload(b *testing.B, n int) {
	if n <= e.loaded {
		return
	}
	start := time.Now()
	var next atomic.Int64
	next.Store(int64(e.loaded))
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if err := e.preloadOne(context.Background(), int(i)); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("preloading: %v", firstErr)
	}
	b.Logf("preloaded volumes %d..%d in %v", e.loaded, n-1, time.Since(start).Round(time.Second))
	e.loaded = n
}

func (e *scaleEnv) preloadOne(ctx context.Context, i int) error {
	claim, pvName, vaName := fmt.Sprintf("claim-%05d", i), fmt.Sprintf("pv-%s-%05d", e.ns, i), fmt.Sprintf("va-%s-%05d", e.ns, i)
	handle, err := e.driver.AddVolume(fakedriver.Volume{ID: fmt.Sprintf("scale-vol-%05d", i), Name: pvName, CapacityBytes: 1 << 30})
	if err != nil {
		return err
	}
	size := resource.MustParse("1Gi")
	rwo := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	pvc, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim, Namespace: e.ns, Annotations: map[string]string{
			"pv.kubernetes.io/bind-completed":               "yes",
			"pv.kubernetes.io/bound-by-controller":          "yes",
			"volume.beta.kubernetes.io/storage-provisioner": e.drv,
			"volume.kubernetes.io/storage-provisioner":      e.drv,
		}},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: rwo, StorageClassName: &e.sc, VolumeName: pvName,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if _, err := e.kube.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName,
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": e.drv},
			Finalizers:  []string{"external-provisioner.volume.kubernetes.io/finalizer", attacher.FinalizerName(e.drv)}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity: corev1.ResourceList{corev1.ResourceStorage: size}, AccessModes: rwo,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete, StorageClassName: e.sc,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: e.ns, Name: claim, UID: pvc.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: e.drv, VolumeHandle: handle, FSType: "ext4"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// Status by merge patch: no resourceVersion, so kube-controller-manager's
	// own status writes racing with these cannot make them fail.
	if _, err := e.kube.CoreV1().PersistentVolumes().Patch(ctx, pvName, types.MergePatchType,
		[]byte(`{"status":{"phase":"Bound"}}`), metav1.PatchOptions{}, "status"); err != nil {
		return err
	}
	if _, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Patch(ctx, claim, types.MergePatchType,
		[]byte(`{"status":{"phase":"Bound","accessModes":["ReadWriteOnce"],"capacity":{"storage":"1Gi"}}}`), metav1.PatchOptions{}, "status"); err != nil {
		return err
	}
	if _, err := e.kube.StorageV1().VolumeAttachments().Create(ctx, &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: vaName, Finalizers: []string{attacher.FinalizerName(e.drv)},
			Annotations: map[string]string{attacher.NodeIDAnnotation: e.driver.NodeID()}},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: e.drv, NodeName: e.node,
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pvName}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := e.kube.StorageV1().VolumeAttachments().Patch(ctx, vaName, types.MergePatchType,
		[]byte(`{"status":{"attached":true}}`), metav1.PatchOptions{}, "status"); err != nil {
		return err
	}
	if i%10 != 0 {
		return nil
	}
	snapName, contentName := fmt.Sprintf("snap-%05d", i), fmt.Sprintf("snapcontent-%s-%05d", e.ns, i)
	snap, err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Create(ctx, &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: snapName, Namespace: e.ns},
		Spec: snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &claim},
			VolumeSnapshotClassName: &e.snapCls},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if _, err := e.snaps.SnapshotV1().VolumeSnapshotContents().Create(ctx, &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: contentName},
		Spec: snapv1.VolumeSnapshotContentSpec{
			VolumeSnapshotRef: corev1.ObjectReference{Kind: "VolumeSnapshot", APIVersion: "snapshot.storage.k8s.io/v1",
				Namespace: e.ns, Name: snapName, UID: snap.UID},
			DeletionPolicy: snapv1.VolumeSnapshotContentDelete, Driver: e.drv,
			Source:                  snapv1.VolumeSnapshotContentSource{VolumeHandle: &handle},
			VolumeSnapshotClassName: &e.snapCls,
		},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	if _, err := e.snaps.SnapshotV1().VolumeSnapshotContents().Patch(ctx, contentName, types.MergePatchType,
		fmt.Appendf(nil, `{"status":{"snapshotHandle":"snap-%05d","readyToUse":true,"restoreSize":%d,"creationTime":%d}}`, i, 1<<30, now),
		metav1.PatchOptions{}, "status"); err != nil {
		return err
	}
	if _, err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Patch(ctx, snapName, types.MergePatchType,
		fmt.Appendf(nil, `{"status":{"boundVolumeSnapshotContentName":%q,"readyToUse":true,"restoreSize":"1Gi"}}`, contentName),
		metav1.PatchOptions{}, "status"); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%05d", i), Namespace: e.ns},
		// Not scheduled (no scheduler runs): a Pod on a node without kubelet
		// would be evicted by the node lifecycle controller.
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
	for j := i; j < i+10; j++ {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: fmt.Sprintf("v%d", j-i),
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: fmt.Sprintf("claim-%05d", j)}}})
	}
	_, err = e.kube.CoreV1().Pods(e.ns).Create(ctx, pod, metav1.CreateOptions{})
	return err
}

// scaleProc is one process under measurement with its own counting proxy.
type scaleProc struct {
	name    string
	p       *process
	proxy   *countingProxy
	start   time.Time
	readyz  string // csi-hub's /readyz URL
	ready   time.Duration
	synced  time.Duration
	rss     float64
	rssIdle float64 // VmRSS at the end of the idle window: the steady state
	lists   int
	watches int
	streams int
	writes  int
	idleCPU float64
	idleW   int
	peak    float64
}

func (e *scaleEnv) startProc(b *testing.B, name string) *scaleProc {
	proxy := startProxy(b, e.c.RESTConfig())
	args := []string{"--csi-address=" + e.sock, "--kubeconfig=" + proxy.kubeconfig(b),
		"--kube-api-qps=" + strconv.Itoa(e.qps), "--kube-api-burst=" + strconv.Itoa(2*e.qps), "-v=1"}
	sp := &scaleProc{name: name, proxy: proxy}
	bin := ""
	var env []string
	if name == hubGOGC100 {
		env = []string{"GOGC=100"}
	}
	if strings.HasPrefix(name, "csi-hub") {
		port := freePort(b)
		sp.readyz = "http://127.0.0.1:" + port + "/readyz"
		args = append(args, "--http-endpoint=127.0.0.1:"+port, "--health-port=0")
		if os.Getenv("CSI_HUB_SCALE_PROFILE") != "" {
			args = append(args, "--enable-pprof")
		}
		bin = csiHubBinary(b)
	} else {
		bin = sidecarBinary(b, strings.TrimPrefix(name, "external-"))
	}
	sp.start = time.Now()
	sp.p = startProcessEnv(b, env, bin, args...)
	return sp
}

// hubGOGC100 names the second csi-hub of CSI_HUB_SCALE_GOGC100.
const hubGOGC100 = "csi-hub GOGC=100"

func freePort(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// waitSynced waits until the process's caches are synced: its last initial
// list ended and no list has started for 5 s (csi-hub: also /readyz says
// ok). It records the start-up figures.
func (sp *scaleProc) waitSynced() error {
	deadline := time.Now().Add(5 * time.Minute)
	for sp.readyz != "" && sp.ready == 0 {
		if resp, err := http.Get(sp.readyz); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				sp.ready = time.Since(sp.start)
				break
			}
		}
		if time.Now().After(deadline) || !sp.p.alive() {
			return fmt.Errorf("%s not ready:\n%s", sp.name, sp.p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		lists, watches, streams, last := sp.proxy.Requests()
		if (lists > 0 || streams > 0) && !last.IsZero() && time.Since(last) > 5*time.Second {
			sp.synced = last.Sub(sp.start)
			if sp.ready == 0 {
				sp.ready = sp.synced
			}
			sp.lists, sp.watches, sp.streams = lists, watches, streams
			return nil
		}
		if time.Now().After(deadline) || !sp.p.alive() {
			return fmt.Errorf("%s did not sync:\n%s", sp.name, sp.p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cpuSeconds is the process's user+system CPU time so far.
func (p *process) cpuSeconds() float64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return -1
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// after "pid (comm) ": state is fields[0]; utime and stime are fields 14 and 15 of stat (1-based)
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func (e *scaleEnv) measure(b *testing.B, n int) {
	b.StopTimer()
	names := []string{"csi-hub", "external-provisioner", "external-attacher", "external-resizer", "external-snapshotter"}
	if os.Getenv("CSI_HUB_SCALE_GOGC100") != "" {
		names = append(names, hubGOGC100)
	}
	procs := map[string]*scaleProc{}
	var order []*scaleProc
	for _, name := range names {
		sp := e.startProc(b, name)
		procs[name] = sp
		order = append(order, sp)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(order))
	for _, sp := range order {
		wg.Go(func() {
			if err := sp.waitSynced(); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	for _, sp := range order {
		sp.rss = sp.p.rssMiB("VmRSS:")
		sp.writes = sp.proxy.Writes()
	}
	if dir := os.Getenv("CSI_HUB_SCALE_PROFILE"); dir != "" {
		saveHeapProfile(b, procs["csi-hub"], dir, n)
	}
	// Idle: nothing changes; what does each process spend?
	cpu0 := map[string]float64{}
	for _, sp := range order {
		cpu0[sp.name] = sp.p.cpuSeconds()
	}
	time.Sleep(e.idle)
	for _, sp := range order {
		sp.idleCPU = sp.p.cpuSeconds() - cpu0[sp.name]
		sp.idleW = sp.proxy.Writes() - sp.writes
		sp.peak = sp.p.peakRSSMiB()
		sp.rssIdle = sp.p.rssMiB("VmRSS:")
		if !sp.p.alive() {
			b.Fatalf("%s exited:\n%s", sp.name, sp.p.tail())
		}
	}

	b.Logf("N=%d volumes (%d snapshots, %d Pods), QPS %d/burst %d, idle window %v", n, (n+9)/10, (n+9)/10, e.qps, 2*e.qps, e.idle)
	b.Logf("%-22s %8s %8s %9s %9s %9s %6s %6s %7s %7s %8s %7s", "process", "ready-s", "synced-s", "RSS-MiB", "idleRSS", "peak-MiB", "LIST", "WATCH", "stream", "writes", "idleCPU", "idleW")
	sidecarsRSS, sidecarsIdle, sidecarsPeak := 0.0, 0.0, 0.0
	for _, sp := range order {
		b.Logf("%-22s %8.2f %8.2f %9.1f %9.1f %9.1f %6d %6d %7d %7d %8.2f %7d", sp.name, sp.ready.Seconds(), sp.synced.Seconds(),
			sp.rss, sp.rssIdle, sp.peak, sp.lists, sp.watches, sp.streams, sp.writes, sp.idleCPU, sp.idleW)
		if !strings.HasPrefix(sp.name, "csi-hub") {
			sidecarsRSS += sp.rss
			sidecarsIdle += sp.rssIdle
			sidecarsPeak += sp.peak
		}
	}
	hub := procs["csi-hub"]
	b.Logf("%-22s %8s %8s %9.1f %9.1f %9.1f   csi-hub/sidecars RSS %.2f, after idle %.2f, peak %.2f", "4 sidecars summed", "", "",
		sidecarsRSS, sidecarsIdle, sidecarsPeak, hub.rss/sidecarsRSS, hub.rssIdle/sidecarsIdle, hub.peak/sidecarsPeak)

	// 100 new claims with N present: csi-hub alone as provisioner, then the
	// official provisioner alone (a fresh one, synced first).
	procs["external-provisioner"].p.stop()
	if sp := procs[hubGOGC100]; sp != nil {
		sp.p.stop() // one csi-hub provisions
	}
	hubBound, hubDeleted, hubWrites := e.claims100(b, hub)
	hub.p.stop()
	prov := e.startProc(b, "external-provisioner")
	if err := prov.waitSynced(); err != nil {
		b.Fatal(err)
	}
	provBound, provDeleted, provWrites := e.claims100(b, prov)
	b.Logf("100 new claims with N=%d present, QPS %d: csi-hub bound in %.2fs, deleted in %.2fs (%d writes); external-provisioner bound in %.2fs, deleted in %.2fs (%d writes)",
		n, e.qps, hubBound.Seconds(), hubDeleted.Seconds(), hubWrites, provBound.Seconds(), provDeleted.Seconds(), provWrites)
	for _, sp := range append(order, prov) {
		sp.p.stop()
	}

	b.ReportMetric(hub.ready.Seconds(), "hub-ready-s")
	b.ReportMetric(hub.rss, "hub-RSS-MiB")
	b.ReportMetric(hub.rssIdle, "hub-idle-RSS-MiB")
	b.ReportMetric(hub.peak, "hub-peak-MiB")
	b.ReportMetric(sidecarsRSS, "sidecars-RSS-MiB")
	b.ReportMetric(hub.rss/sidecarsRSS, "RSS-ratio")
	b.ReportMetric(float64(hub.lists), "hub-LISTs")
	b.ReportMetric(float64(hub.watches), "hub-WATCHes")
	b.ReportMetric(hub.idleCPU, "hub-idle-CPU-s")
	b.ReportMetric(hubBound.Seconds(), "hub-100-bound-s")
	b.ReportMetric(hubDeleted.Seconds(), "hub-100-deleted-s")
	b.ReportMetric(provBound.Seconds(), "prov-100-bound-s")
}

// claims100 creates 100 claims, waits until all are Bound, deletes them and
// waits until their PVs and backend volumes are gone. writes are the
// provisioning process's API writes meanwhile.
func (e *scaleEnv) claims100(b *testing.B, sp *scaleProc) (bound, deleted time.Duration, writes int) {
	ctx := context.Background()
	ns, err := e.c.CreateNamespace(ctx, "claims")
	if err != nil {
		b.Fatal(err)
	}
	w0 := sp.proxy.Writes()
	backend0 := len(e.driver.Volumes())
	start := time.Now()
	e.createClaims(ctx, b, ns, "new", volumes)
	var pvs []string
	deadline := time.Now().Add(5 * time.Minute)
	for {
		list, err := e.kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		pvs = pvs[:0]
		for _, pvc := range list.Items {
			if pvc.Status.Phase == corev1.ClaimBound {
				pvs = append(pvs, pvc.Spec.VolumeName)
			}
		}
		if len(pvs) == volumes {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d/%d claims bound after 5 minutes:\n%s", sp.name, len(pvs), volumes, sp.p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	bound = time.Since(start)
	start = time.Now()
	if err := e.kube.CoreV1().PersistentVolumeClaims(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		b.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Minute)
	for len(pvs) > 0 {
		left := pvs[:0]
		for _, pv := range pvs {
			if _, err := e.kube.CoreV1().PersistentVolumes().Get(ctx, pv, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				left = append(left, pv)
			}
		}
		pvs = left
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d PVs left after 5 minutes:\n%s", sp.name, len(pvs), sp.p.tail())
		}
		if len(pvs) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	deleted = time.Since(start)
	if n := len(e.driver.Volumes()); n != backend0 {
		b.Fatalf("%s: backend has %d volumes after the 100 claims were deleted, %d before", sp.name, n, backend0)
	}
	return bound, deleted, sp.proxy.settledWrites() - w0
}

// createClaims creates n 1Gi claims of the benchmark's class named
// <prefix>-000..., all at once, as a burst of users would.
func (e *scaleEnv) createClaims(ctx context.Context, b *testing.B, ns, prefix string, n int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := e.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%03d", prefix, i), Namespace: ns},
				Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: &e.sc,
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceStorage: resource.MustParse("1Gi")}}},
			}, metav1.CreateOptions{})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// saveHeapProfile fetches csi-hub's heap profile (--enable-pprof) without
// forcing a collection first, so it shows the heap as the RSS just measured
// saw it: heap-N.pb.gz for `go tool pprof`, heap-N.txt ending in MemStats.
func saveHeapProfile(b *testing.B, sp *scaleProc, dir string, n int) {
	base := strings.TrimSuffix(sp.readyz, "/readyz") + "/debug/pprof/heap"
	for url, file := range map[string]string{base: fmt.Sprintf("heap-%d.pb.gz", n), base + "?debug=1": fmt.Sprintf("heap-%d.txt", n)} {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatalf("heap profile: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("heap profile %s: %s %v", url, resp.Status, err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), body, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("csi-hub heap profile saved in %s (heap-%d.pb.gz, heap-%d.txt)", dir, n, n)
}
