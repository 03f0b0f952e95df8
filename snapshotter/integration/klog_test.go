package integration

import (
	"bytes"
	"flag"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"k8s.io/klog/v2"
)

// logCapture collects everything klog writes while a test runs.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) String() string {
	klog.Flush()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logCapture) Count(s string) int { return strings.Count(l.String(), s) }

// captureKlog sends klog's output (at verbosity v) to a buffer until the
// test ends. klog is process-global: the tests of this package do not run
// in parallel.
func captureKlog(t *testing.T, v int) *logCapture {
	t.Helper()
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	set := func(name, value string) {
		if err := fs.Set(name, value); err != nil {
			t.Fatalf("klog flag %s: %v", name, err)
		}
	}
	capture := &logCapture{}
	set("logtostderr", "false")
	set("alsologtostderr", "false")
	set("stderrthreshold", "FATAL")
	set("v", strconv.Itoa(v))
	klog.SetOutput(capture)
	t.Cleanup(func() {
		klog.Flush()
		set("v", "0")
		set("logtostderr", "true")
		klog.SetOutput(os.Stderr)
		if t.Failed() {
			t.Logf("captured klog output (last 4000 bytes):\n%s", tail(capture.String(), 4000))
		}
	})
	return capture
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
