package testutil

import (
	"testing"

	"k8s.io/klog/v2"
)

// The capture sees what is logged at its verbosity and no more, and the end
// of the test gives klog back: lower verbosity, output no longer captured,
// and a later capture allowed.
func TestCaptureKlogRestores(t *testing.T) {
	var logs *Klog
	t.Run("capture", func(t *testing.T) {
		logs = CaptureKlog(t, 3)
		klog.V(3).Info("at v3")
		klog.V(4).Info("at v4")
	})
	if logs.Count("at v3") != 1 || logs.Count("at v4") != 0 {
		t.Errorf("captured at -v=3:\n%s", logs)
	}
	if klog.V(1).Enabled() {
		t.Error("verbosity not restored after the test")
	}
	klog.Warning("after the capture")
	if logs.Count("after the capture") != 0 {
		t.Error("klog output still captured after the test")
	}
	t.Run("again", func(t *testing.T) { CaptureKlog(t, 0) })
}
