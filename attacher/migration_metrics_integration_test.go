package attacher_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// publishCount is the csi_sidecar_operations_seconds_count of method with
// grpc_status_code OK and migrated="<migrated>" on the hub's /metrics (the
// handler csi-hub serves on --http-endpoint), or "" when there is none.
func (e *env) publishCount(method, migrated string) (string, string) {
	e.t.Helper()
	rec := httptest.NewRecorder()
	hub.MetricsHandler(e.hub.Conn.Metrics.GetRegistry(), e.hub.Metrics).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var lines []string
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if !strings.HasPrefix(l, "csi_sidecar_operations_seconds_count{") {
			continue
		}
		lines = append(lines, l)
		if strings.Contains(l, `method_name="/csi.v1.Controller/`+method+`"`) && strings.Contains(l, `grpc_status_code="OK"`) &&
			strings.Contains(l, `migrated="`+migrated+`"`) {
			return l[strings.LastIndex(l, " ")+1:], ""
		}
	}
	return "", strings.Join(lines, "\n")
}

// TestMigratedLabelAttach: as external-attacher (csi-lib-utils'
// metrics.WithMigration, markAsMigrated), ControllerPublishVolume and
// ControllerUnpublishVolume of an in-tree EBS PV are recorded with
// migrated="true", those of a CSI PV of the same driver with "false".
func TestMigratedLabelAttach(t *testing.T) {
	tc := inTreeCases[0] // ebs.csi.aws.com
	e := migrationEnv(t, tc.driver)
	e.startHub()
	t.Cleanup(func() {
		if t.Failed() {
			_, all := e.publishCount("none", "none")
			t.Logf("csi_sidecar_operations_seconds_count:\n%s", all)
		}
	})
	pvName, _ := e.inTreePV(tc, "in-tree")
	if _, err := e.driver.AddVolume(fakedriver.Volume{ID: "csi-vol", Name: "csi-vol", CapacityBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	csiPV := e.boundPV("csi", "csi-vol", nil)
	e.pod("app-in-tree", "in-tree")
	e.pod("app-csi", "csi")
	for _, pv := range []string{pvName, csiPV} {
		e.waitVA(e.va(pv).Name, "attached", time.Minute, attached)
	}
	e.deletePod("app-in-tree")
	e.deletePod("app-csi")
	for _, method := range []string{"ControllerPublishVolume", "ControllerUnpublishVolume"} {
		for _, migrated := range []string{"true", "false"} {
			e.waitFor(method+` with migrated="`+migrated+`" on /metrics`, time.Minute, func() (bool, error) {
				n, _ := e.publishCount(method, migrated)
				return n == "1", nil
			})
		}
	}
}
