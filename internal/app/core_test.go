package app

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logsapi "k8s.io/component-base/logs/api/v1"
	logsjson "k8s.io/component-base/logs/json"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// The whole process opens exactly one watch per resource, however many of its
// controllers use that resource.
func TestOneWatchPerResource(t *testing.T) {
	c := cluster.Shared(t)
	_, sock := startDriver(t, fakedriver.Options{Attach: true, ListPublishedNodes: true})
	counter := newWatchCounter()
	cfg := c.RESTConfig()
	cfg.Wrap(counter.wrap)
	r := startHub(t, cfg, hubtest.Options(sock))
	eventually(t, time.Minute, "hub ready", func() (bool, string) {
		code, body := get(r.hub, "/readyz")
		return code == 200, body
	})
	if got := r.hub.Controllers(); !containsAll(got, "provisioner", "attacher", "snapshotter") {
		t.Fatalf("controllers = %v, want provisioner, attacher and snapshotter for a driver with those capabilities", got)
	}
	time.Sleep(2 * time.Second) // let every controller settle; a second watch would show by now
	counts := counter.snapshot()
	for _, res := range []string{"persistentvolumeclaims", "persistentvolumes", "storageclasses", "volumeattachments", "csinodes"} {
		if counts[res] != 1 {
			t.Errorf("%s: %d watches open at once, want exactly 1 (all: %v)", res, counts[res], counts)
		}
	}
	for res, n := range counts {
		if n > 1 {
			t.Errorf("%s: %d watches open at once: a second watch on one resource", res, n)
		}
	}
}

func containsAll(list []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, l := range list {
			found = found || l == w
		}
		if !found {
			return false
		}
	}
	return true
}

// /healthz is the livenessprobe: it runs the driver's Probe. /metrics carries the
// sidecars' csi_sidecar_operations_seconds so existing dashboards keep working.
func TestHealthAndMetrics(t *testing.T) {
	c := cluster.Shared(t)
	d, sock := startDriver(t, fakedriver.Options{})
	r := startHub(t, c.RESTConfig(), hubtest.Options(sock))
	eventually(t, time.Minute, "hub ready", func() (bool, string) {
		code, body := get(r.hub, "/readyz")
		return code == 200, body
	})
	if code, body := get(r.hub, "/healthz"); code != 200 {
		t.Fatalf("/healthz with a ready driver = %d %s", code, body)
	}
	d.SetReady(false)
	if code, body := get(r.hub, "/healthz"); code != 500 || !strings.Contains(body, "not ready") {
		t.Fatalf("/healthz with a driver that is not ready = %d %q, want 500 (as livenessprobe) naming the probe", code, body)
	}
	if code, _ := get(r.hub, "/readyz"); code != 503 {
		t.Fatalf("/readyz with a driver that is not ready = %d, want 503", code)
	}
	d.SetReady(true)

	ns := newNamespace(t, c)
	class := storageClass(t, c.Client, d.Name(), nil)
	createPVC(t, c.Client, ns, "metrics", class)
	waitBound(t, c.Client, ns, "metrics", time.Minute)

	_, metrics := get(r.hub, "/metrics")
	for _, want := range []string{
		`csi_sidecar_operations_seconds_count{driver_name="fake.csi-hub.io",grpc_status_code="OK",method_name="/csi.v1.Controller/CreateVolume"} 1`,
		`csi_sidecar_operations_seconds_count{driver_name="fake.csi-hub.io",grpc_status_code="OK",method_name="/csi.v1.Identity/Probe"}`,
		`csi_hub_kubernetes_writes_total{resource="persistentvolumes",verb="create"} 1`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grepLines(metrics, "csi_"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// csi-hub waits while the driver socket is absent, and keeps queued work across
// a driver restart.
func TestWaitsForDriverAndSurvivesRestart(t *testing.T) {
	c := cluster.Shared(t)
	dir, err := os.MkdirTemp("", "hub-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "csi.sock")
	d := fakedriver.New(fakedriver.Options{})
	defer d.StopNow()
	go func() {
		time.Sleep(1500 * time.Millisecond)
		if err := d.Start(sock); err != nil {
			t.Errorf("starting driver: %v", err)
		}
	}()
	start := time.Now()
	r := startHub(t, c.RESTConfig(), hubtest.Options(sock))
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("hub connected after %v, before the driver existed", waited)
	}
	ns := newNamespace(t, c)
	class := storageClass(t, c.Client, d.Name(), nil)
	createPVC(t, c.Client, ns, "before", class)
	waitBound(t, c.Client, ns, "before", time.Minute)

	d.StopNow()
	createPVC(t, c.Client, ns, "during", class)
	time.Sleep(2 * time.Second) // the hub tries, fails with Unavailable, backs off
	if err := d.Start(sock); err != nil {
		t.Fatal(err)
	}
	waitBound(t, c.Client, ns, "during", time.Minute)
	if n := len(d.Volumes()); n != 2 {
		t.Fatalf("driver has %d volumes, want 2", n)
	}
	_ = r
}

// Secret values reach the driver but never the logs, even at -v=5 where every
// CSI request is logged, in the text format and in --logging-format=json;
// the JSON lines carry the contextual fields (controller, object).
func TestSecretsNeverLogged(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) { secretsNeverLogged(t, format) })
	}
}

func secretsNeverLogged(t *testing.T, format string) {
	c := cluster.Shared(t)
	d, sock := startDriver(t, fakedriver.Options{})
	ns := newNamespace(t, c)
	const secretValue = "hunter2-do-not-log-me"
	_, err := c.Client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		StringData: map[string]string{"password": secretValue},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := testutil.CaptureKlog(t, 5)
	out := logs.String
	if format == "json" {
		// component-base's JSON logger, as --logging-format=json installs it.
		var buf testutil.Klog
		logger, _ := logsjson.Factory{}.Create(logsapi.LoggingConfiguration{Format: "json", Verbosity: 5},
			logsapi.LoggingOptions{ErrorStream: &buf, InfoStream: &buf})
		klog.SetLoggerWithOptions(logger, klog.ContextualLogger(true))
		t.Cleanup(klog.ClearLogger)
		out = buf.String
	}
	r := startHub(t, c.RESTConfig(), hubtest.Options(sock))
	class := storageClass(t, c.Client, d.Name(), map[string]string{
		"csi.storage.k8s.io/provisioner-secret-name":      "creds",
		"csi.storage.k8s.io/provisioner-secret-namespace": ns,
	})
	createPVC(t, c.Client, ns, "secret", class)
	waitBound(t, c.Client, ns, "secret", time.Minute)
	_ = r.stop(t)
	klog.Flush()

	reqs := d.Requests("CreateVolume")
	if len(reqs) == 0 {
		t.Fatal("no CreateVolume request recorded")
	}
	got := false
	for _, req := range reqs {
		if cv, ok := req.(interface{ GetSecrets() map[string]string }); ok && cv.GetSecrets()["password"] == secretValue {
			got = true
		}
	}
	if !got {
		t.Fatal("the driver did not receive the provisioner secret")
	}
	logged := out()
	if !strings.Contains(logged, "CreateVolume") {
		t.Fatalf("the -v=5 log does not show the CreateVolume request, so the check below proves nothing:\n%.2000s", logged)
	}
	if strings.Contains(logged, secretValue) {
		t.Fatalf("a secret value appeared in the %s logs", format)
	}
	if format == "json" && !strings.Contains(logged, `"controller":"provisioner"`) {
		t.Errorf("no JSON line carries the contextual field controller=provisioner:\n%.2000s", logged)
	}
}

// One Lease for all controllers: a standby does nothing until the leader goes;
// a leader that loses its lease stops every controller and Run reports it.
func TestLeaderElection(t *testing.T) {
	c := cluster.Shared(t)
	d, sock := startDriver(t, fakedriver.Options{})
	ns := newNamespace(t, c)
	opts := hubtest.Options(sock)
	opts.LeaderElection = true
	opts.LeaderElectionNamespace = ns
	opts.LeaderElectionLeaseDuration = 4 * time.Second
	opts.LeaderElectionRenewDeadline = 3 * time.Second
	opts.LeaderElectionRetryPeriod = 500 * time.Millisecond
	opts.Compat.LeaderElectionLabels = map[string]string{"team": "storage"} // --leader-election-labels

	a := startHub(t, c.RESTConfig(), opts)
	eventually(t, 30*time.Second, "first hub leads", func() (bool, string) {
		code, body := get(a.hub, "/readyz")
		return code == 200, body
	})
	b := startHub(t, c.RESTConfig(), opts)
	time.Sleep(2 * time.Second)
	if code, body := get(b.hub, "/readyz"); code != 503 || !strings.Contains(body, "not the leader") {
		t.Fatalf("second hub /readyz = %d %q, want 503 not the leader", code, body)
	}
	lease, err := c.Client.CoordinationV1().Leases(ns).Get(context.Background(), hub.LeaseName(d.Name()), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the one Lease %s: %v", hub.LeaseName(d.Name()), err)
	}
	leases, _ := c.Client.CoordinationV1().Leases(ns).List(context.Background(), metav1.ListOptions{})
	if len(leases.Items) != 1 {
		t.Fatalf("%d leases in %s, want one for all controllers", len(leases.Items), ns)
	}
	first := *lease.Spec.HolderIdentity
	if lease.Labels["team"] != "storage" {
		t.Errorf("Lease labels %v, want --leader-election-labels' team=storage", lease.Labels)
	}

	// The leader stops (rolling update): the standby takes over and provisions.
	if err := a.stop(t); err != nil {
		t.Fatalf("leader stopped with %v", err)
	}
	eventually(t, 30*time.Second, "standby takes over", func() (bool, string) {
		code, body := get(b.hub, "/readyz")
		return code == 200, body
	})
	class := storageClass(t, c.Client, d.Name(), nil)
	createPVC(t, c.Client, ns, "after-failover", class)
	waitBound(t, c.Client, ns, "after-failover", time.Minute)

	// Another holder takes the Lease away: the leader must stop and say so.
	lease, err = c.Client.CoordinationV1().Leases(ns).Get(context.Background(), hub.LeaseName(d.Name()), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *lease.Spec.HolderIdentity == first {
		t.Fatalf("lease still held by the stopped leader %s", first)
	}
	intruder, long := "intruder", int32(3600)
	now := metav1.NewMicroTime(time.Now())
	lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds = &intruder, &long
	lease.Spec.AcquireTime, lease.Spec.RenewTime = &now, &now
	if _, err := c.Client.CoordinationV1().Leases(ns).Update(context.Background(), lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-b.done:
		b.done <- err
		if !errors.Is(err, hub.ErrLostLease) {
			t.Fatalf("Run after losing the lease = %v, want ErrLostLease", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the leader kept running after another holder took the lease")
	}
	created := len(d.Volumes())
	createPVC(t, c.Client, ns, "no-leader", class)
	time.Sleep(3 * time.Second)
	if n := len(d.Volumes()); n != created {
		t.Fatalf("a volume was created with no leader (%d -> %d)", created, n)
	}
}
