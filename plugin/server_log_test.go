package plugin_test

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/plugintest"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestCallLogStripsSecrets turns on -v=5 call logging and checks requests
// are logged with their secrets replaced.
func TestCallLogStripsSecrets(t *testing.T) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	var out lockedBuffer
	fs.Set("logtostderr", "false")
	fs.Set("v", "5")
	klog.SetOutput(&out)
	t.Cleanup(func() {
		fs.Set("v", "0")
		fs.Set("logtostderr", "true")
		klog.SetOutput(nil)
	})

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
