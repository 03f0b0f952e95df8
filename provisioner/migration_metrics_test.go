package provisioner

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// scrapeOps returns the csi_sidecar_operations_seconds_count lines of the
// hub's /metrics (the handler csi-hub serves on --http-endpoint).
func (e *env) scrapeOps() []string {
	e.t.Helper()
	rec := httptest.NewRecorder()
	hub.MetricsHandler(e.hub.Conn.Metrics.GetRegistry(), e.hub.Metrics).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		e.t.Fatalf("/metrics = %d: %s", rec.Code, rec.Body)
	}
	var out []string
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, "csi_sidecar_operations_seconds_count{") {
			out = append(out, l)
		}
	}
	return out
}

// opsCount is the count of the line for method with exactly the labels given
// (a missing label must be absent), or "" when there is none.
func opsCount(lines []string, method, migrated string) string {
	for _, l := range lines {
		if !strings.Contains(l, `method_name="/csi.v1.Controller/`+method+`"`) || !strings.Contains(l, `grpc_status_code="OK"`) {
			continue
		}
		m := regexp.MustCompile(`migrated="([^"]*)"`).FindStringSubmatch(l)
		switch {
		case migrated == "" && m == nil, m != nil && m[1] == migrated:
			return l[strings.LastIndex(l, " ")+1:]
		}
	}
	return ""
}

// TestMigratedLabel: as external-provisioner (csi-lib-utils'
// metrics.WithMigration), csi_sidecar_operations_seconds carries a
// "migrated" label when the driver is a migration target: "true" for the
// CreateVolume and DeleteVolume of an in-tree claim kube-controller-manager
// handed over, "false" for a CSI claim of the same driver and for the other
// calls. A driver no in-tree plugin migrates to has no such label.
func TestMigratedLabel(t *testing.T) {
	e := migrationEnv(t, ebsDriver)
	e.startHub()
	inTree := e.storageClass("gp3", provisionedBy(ebsPlugin), withPolicy(v1.PersistentVolumeReclaimDelete), withParams("type", "gp3"))
	csiClass := e.storageClass("csi", withPolicy(v1.PersistentVolumeReclaimDelete))
	e.createPVC("in-tree", inTree.Name, "1Gi")
	e.createPVC("csi", csiClass.Name, "1Gi")
	_, pvInTree := e.waitMigratedPV("in-tree")
	_, pvCSI := e.waitBound("csi")
	if pvInTree.Spec.AWSElasticBlockStore == nil || pvCSI.Spec.CSI == nil {
		t.Fatalf("PV sources %+v and %+v, want one in-tree and one CSI", pvInTree.Spec.PersistentVolumeSource, pvCSI.Spec.PersistentVolumeSource)
	}
	e.deletePVC("in-tree")
	e.deletePVC("csi")
	e.waitPVGone(pvInTree.Name)
	e.waitPVGone(pvCSI.Name)

	lines := e.scrapeOps()
	for _, c := range []struct{ method, migrated string }{
		{"CreateVolume", "true"}, {"CreateVolume", "false"}, {"DeleteVolume", "true"}, {"DeleteVolume", "false"},
	} {
		if got := opsCount(lines, c.method, c.migrated); got != "1" {
			t.Errorf("%s with migrated=%q: count %q, want 1\n%s", c.method, c.migrated, got, strings.Join(lines, "\n"))
		}
	}
	for _, l := range lines {
		if !strings.Contains(l, `migrated="`) {
			t.Errorf("a line without the migrated label for migration target %s: %s", ebsDriver, l)
		}
	}

	// Not a migration target: the label does not exist.
	plain := baseEnv(t, DefaultConfig())
	plain.startFake(fakedriver.Options{})
	plain.startHub()
	sc := plain.storageClass("csi")
	plain.createPVC("data", sc.Name, "1Gi")
	plain.waitBound("data")
	lines = plain.scrapeOps()
	if got := opsCount(lines, "CreateVolume", ""); got != "1" {
		t.Errorf("driver %s: CreateVolume count %q without a migrated label, want 1\n%s", plain.driver, got, strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if strings.Contains(l, "migrated=") {
			t.Errorf("driver %s is no migration target, yet: %s", plain.driver, l)
		}
	}
}
