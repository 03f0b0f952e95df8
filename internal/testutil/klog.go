package testutil

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

// Klog is klog's output captured during one test.
type Klog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write takes klog's output, which comes from many goroutines.
func (k *Klog) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.buf.Write(p)
}

// String returns everything captured so far.
func (k *Klog) String() string {
	klog.Flush()
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.buf.String()
}

// Count returns how often s occurs in the captured output.
func (k *Klog) Count(s string) int { return strings.Count(k.String(), s) }

// klogActive refuses a second capture before the first has ended: klog's
// flags and output are process-global, so captures cannot overlap (the tests
// that capture run one after another, not in parallel).
var klogActive struct {
	sync.Mutex
	on bool
}

// CaptureKlog sends klog's output at the given -v verbosity to a buffer until
// the test ends, then restores the flags it changed and output to stderr. On
// failure the tail of the capture is logged.
func CaptureKlog(t testing.TB, verbosity int) *Klog {
	t.Helper()
	klogActive.Lock()
	if klogActive.on {
		klogActive.Unlock()
		t.Fatal("CaptureKlog: klog is already being captured (klog is process-global)")
	}
	klogActive.on = true
	klogActive.Unlock()

	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs) // binds fs to klog's global settings
	set := func(name, value string) {
		if err := fs.Set(name, value); err != nil {
			t.Fatalf("klog flag %s: %v", name, err)
		}
	}
	// stderrthreshold FATAL keeps errors out of the test's stderr too.
	want := map[string]string{"logtostderr": "false", "alsologtostderr": "false",
		"stderrthreshold": "FATAL", "v": strconv.Itoa(verbosity)}
	saved := map[string]string{}
	for name := range want {
		saved[name] = fs.Lookup(name).Value.String()
	}
	capture := &Klog{}
	t.Cleanup(func() {
		klog.Flush()
		for name, value := range saved {
			set(name, value)
		}
		klog.SetOutput(os.Stderr)
		klogActive.Lock()
		klogActive.on = false
		klogActive.Unlock()
		if t.Failed() {
			t.Logf("captured klog output (last 4000 bytes):\n%s", tail(capture.String(), 4000))
		}
	})
	for name, value := range want {
		set(name, value)
	}
	klog.SetOutput(capture)
	return capture
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
