package app

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// sample sums the samples of metric name whose labels contain every one of
// labels (`key="value"`); ok is false when there is none.
func sample(body, name string, labels ...string) (float64, bool) {
	var sum float64
	ok := false
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		metric, value, found := strings.Cut(line, " ")
		if !found {
			continue
		}
		n, lbl, _ := strings.Cut(metric, "{")
		if n != name {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(lbl, l)
		}
		if !match {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Fields(value)[0], 64); err == nil {
			sum += v
			ok = true
		}
	}
	return sum, ok
}

// A dashboard built on the sidecars' metrics keeps working: after a provision
// and a delete (each failing once first) on the real control plane, /metrics
// has client-go's workqueue families for the sidecars' queue names, the lease
// status, the provisioner library's counters, the capacity gauges and
// csi_sidecar_operations_seconds with its labels, and the counters moved.
// The provisioner's events carry its sidecar's source component.
func TestSidecarMetricsAndEventSource(t *testing.T) {
	c := cluster.Shared(t)
	d, sock := startDriver(t, fakedriver.Options{})
	ns := newNamespace(t, c)
	t.Setenv("NAMESPACE", ns)
	opts := hubtest.Options(sock)
	opts.LeaderElection = true
	opts.LeaderElectionNamespace = ns
	ctrl := DefaultControllerOptions()
	ctrl.Provisioner.EnableCapacity = true
	ctrl.Provisioner.CapacityForImmediateBinding = true
	ctrl.Provisioner.CapacityOwnerrefLevel = -1
	ctrl.Provisioner.CapacityPollInterval = time.Hour // only the refreshes after provision/delete
	ctx, cancel := context.WithCancel(context.Background())
	h, err := NewController(ctx, c.RESTConfig(), opts, ctrl)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	scrape := func() string {
		code, body := get(h, "/metrics")
		if code != 200 {
			t.Fatalf("/metrics = %d", code)
		}
		return body
	}
	eventually(t, 30*time.Second, "leadership", func() (bool, string) {
		v, _ := sample(scrape(), "leader_election_master_status", `name="`+hub.LeaseName(d.Name())+`"`)
		return v == 1, fmt.Sprint(v)
	})
	if code, body := get(h, "/healthz/leader-election"); code != 200 {
		t.Errorf("/healthz/leader-election while leading = %d %q", code, body)
	}
	class := storageClass(t, c.Client, d.Name(), nil)
	eventually(t, 30*time.Second, "capacity published", func() (bool, string) {
		v, _ := sample(scrape(), "csistoragecapacities_desired_current")
		return v >= 1, fmt.Sprint(v)
	})
	before := scrape()
	capacityCalls := d.Calls("GetCapacity")

	d.InjectError("CreateVolume", codes.Internal, "injected provisioning failure", 1)
	d.InjectError("DeleteVolume", codes.Internal, "injected deletion failure", 1)
	createPVC(t, c.Client, ns, "metrics", class)
	pvc := waitBound(t, c.Client, ns, "metrics", time.Minute)
	if err := c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(context.Background(), "metrics", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "PV deleted", func() (bool, string) {
		_, err := c.Client.CoreV1().PersistentVolumes().Get(context.Background(), pvc.Spec.VolumeName, metav1.GetOptions{})
		return err != nil, fmt.Sprint(err)
	})
	// Capacity is asked again after provisioning and deletion, without
	// waiting for the (hour-long) poll interval.
	eventually(t, 30*time.Second, "GetCapacity after provision and delete", func() (bool, string) {
		n := d.Calls("GetCapacity")
		return n >= capacityCalls+2, fmt.Sprintf("%d calls, %d before", n, capacityCalls)
	})
	after := scrape()

	classLabel := `class="` + class + `"`
	moved := []struct {
		name   string
		labels []string
	}{
		{"workqueue_adds_total", []string{`name="claims"`}},
		{"workqueue_adds_total", []string{`name="volumes"`}},
		{"workqueue_adds_total", []string{`name="csistoragecapacity"`}},
		{"workqueue_retries_total", []string{`name="claims"`}},
		{"workqueue_queue_duration_seconds_count", []string{`name="claims"`}},
		{"workqueue_work_duration_seconds_count", []string{`name="claims"`}},
		{"controller_persistentvolumeclaim_provision_total", []string{classLabel}},
		{"controller_persistentvolumeclaim_provision_failed_total", []string{classLabel}},
		{"controller_persistentvolumeclaim_provision_duration_seconds_count", []string{classLabel}},
		{"controller_persistentvolume_delete_total", []string{classLabel}},
		{"controller_persistentvolume_delete_failed_total", []string{classLabel}},
		{"controller_persistentvolume_delete_duration_seconds_count", []string{classLabel}},
		{"csi_sidecar_operations_seconds_count", []string{`method_name="/csi.v1.Controller/CreateVolume"`, `grpc_status_code="OK"`, `driver_name="` + d.Name() + `"`}},
		{"csi_sidecar_operations_seconds_count", []string{`method_name="/csi.v1.Controller/CreateVolume"`, `grpc_status_code="Internal"`}},
	}
	for _, m := range moved {
		b, _ := sample(before, m.name, m.labels...)
		a, ok := sample(after, m.name, m.labels...)
		if !ok || a <= b {
			t.Errorf("%s%v: %v before, %v (present %v) after; want it present and moved", m.name, m.labels, b, a, ok)
		}
	}
	for _, name := range []string{"workqueue_depth", "workqueue_unfinished_work_seconds", "workqueue_longest_running_processor_seconds"} {
		if _, ok := sample(after, name, `name="claims"`); !ok {
			t.Errorf("%s{name=\"claims\"} missing", name)
		}
	}
	for _, name := range []string{"csistoragecapacities_desired_goal", "csistoragecapacities_desired_current", "csistoragecapacities_obsolete"} {
		if _, ok := sample(after, name); !ok {
			t.Errorf("%s missing", name)
		}
	}
	if v, _ := sample(after, "csistoragecapacities_desired_goal"); v < 1 {
		t.Errorf("csistoragecapacities_desired_goal = %v, want at least the one class", v)
	}

	// Events: the provisioner library's source component, "<driver>_<host>_<uuid>".
	evs, err := c.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, e := range evs.Items {
		if e.Reason == "ProvisioningSucceeded" && e.InvolvedObject.Name == "metrics" {
			seen = true
			if src := e.Source.Component; !strings.HasPrefix(src, d.Name()+"_") || strings.HasSuffix(src, "_csi-hub") {
				t.Errorf("ProvisioningSucceeded event source %q, want external-provisioner's %s_<host>_<uuid>", src, d.Name())
			}
		}
	}
	if !seen {
		t.Error("no ProvisioningSucceeded event for the claim")
	}
	_ = corev1.EventTypeNormal
}
