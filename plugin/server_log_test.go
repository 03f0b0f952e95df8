package plugin_test

import (
	"context"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
)

// TestCallLogStripsSecrets turns on -v=5 call logging and checks requests
// are logged with their secrets replaced.
func TestCallLogStripsSecrets(t *testing.T) {
	out := testutil.CaptureKlog(t, 5)

	d := plugintest.Start(t, plugintest.Options{})
	req := createReq("logged", mib, nil)
	req.Secrets = map[string]string{"password": "hunter2-very-secret"}
	if _, err := d.ControllerClient().CreateVolume(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	d.ControllerClient().DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{})
	klog.Flush()
	log := out.String()
	if !strings.Contains(log, "/csi.v1.Controller/CreateVolume") || !strings.Contains(log, "logged") {
		t.Fatalf("call not logged at -v=5:\n%s", log)
	}
	if strings.Contains(log, "hunter2-very-secret") {
		t.Fatal("secret value logged")
	}
	if !strings.Contains(log, "CSI call failed") || !strings.Contains(log, "volume_id is required") {
		t.Fatalf("failed call not logged:\n%s", log)
	}
}
