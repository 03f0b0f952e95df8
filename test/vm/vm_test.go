package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/internal/checkout"
	"github.com/csi-hub/csi-hub/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if guestBin != "" {
		os.RemoveAll(filepath.Dir(guestBin)) // the built guest and plugin binaries
	}
	os.Exit(code)
}

var (
	setupOnce sync.Once
	image     *Image
	guestBin  string
	pluginBin string
	setupSkip string // why the VM cannot be provided on this machine
	setupErr  error
)

// setup finds the VM image and the guest binaries once for all tests.
// Only a machine that cannot provide qemu or the kernel skips, loudly; under
// CI=true even that fails, so CI never passes without having run the VM.
func setup(t testing.TB) (*Image, string) {
	t.Helper()
	testutil.SkipUnit(t, "a qemu VM")
	setupOnce.Do(func() {
		if _, err := exec.LookPath("qemu-system-x86_64"); err != nil && os.Geteuid() != 0 {
			setupSkip = "qemu-system-x86_64 is not installed and this user cannot apt-get install it"
			return
		}
		repo := checkout.Root()
		// `make test-deps` built the image (or found the machine cannot: build.sh exit 3).
		img, err := CachedImage(repo)
		if err != nil {
			setupSkip = err.Error()
			return
		}
		// `make test-deps` built the guest test binary and the plugin too
		// (hack/vm/build-guests.sh); stale ones fail the test.
		plugin, agent := guestBinaries(t)
		bin := filepath.Join(filepath.Dir(agent), "guest.test")
		if _, err := os.Stat(bin); err != nil {
			setupErr = fmt.Errorf("%w: run `make test-deps` (hack/vm/build-guests.sh)", err)
			return
		}
		image, guestBin, pluginBin = img, bin, plugin
	})
	if setupSkip != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the NVMe/TCP VM cannot run: %s", setupSkip)
		}
		t.Skipf("SKIPPING the real-kernel NVMe/TCP VM test: %s", setupSkip)
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	if image == nil {
		t.Fatal("the VM setup failed in an earlier test (see its error)")
	}
	return image, guestBin
}

// runGuest boots the VM once with the guest tests matching run and fails
// unless the VM reports PASS. The console goes to a log file whose tail is
// shown on failure.
func runGuest(t testing.TB, name, run string, timeout time.Duration) Result {
	img, bin := setup(t)
	logPath := filepath.Join(os.TempDir(), "csi-hub-vm-"+name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	res, err := Run(context.Background(), RunOptions{
		Image: img, Guest: bin, Log: logFile, Timeout: timeout,
		// The guest runs the real plugin binary, as a DaemonSet would.
		Executables: map[string]string{"csi-hub-plugin": pluginBin},
		Args:        []string{"-test.v", "-test.run=" + run, "-test.timeout=" + (timeout - 20*time.Second).String()},
	})
	t.Logf("VM %q (kernel %s): %v from qemu start to power-off; console log %s", name, img.Version, res.Elapsed.Round(10*time.Millisecond), logPath)
	if err != nil || !res.Passed {
		t.Errorf("VM %q: passed=%v rc=%d err=%v; console tail:\n%s", name, res.Passed, res.ExitCode, err, tail(logPath, 150))
	}
	return res
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// TestTransportInVM: nvme Target export and Initiator attach over
// 127.0.0.1:4420 against the real nvmet and nvme-tcp, plus the error paths.
func TestTransportInVM(t *testing.T) {
	runGuest(t, "transport", "^TestTransport", 4*time.Minute)
}

func TestWriteCPIORoundTrip(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("SKIPPING: no cpio binary to read the archive back")
	}
	var buf bytes.Buffer
	files := []cpioFile{{Name: "test", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")}, {Name: "test.args", Mode: 0o644, Data: []byte("-a b\n")}}
	if err := writeCPIO(&buf, files); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(cpio, "-id", "--quiet")
	cmd.Dir, cmd.Stdin = dir, &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil || !bytes.Equal(got, f.Data) {
			t.Errorf("%s: %q, %v", f.Name, got, err)
		}
		if st, err := os.Stat(filepath.Join(dir, f.Name)); err != nil || st.Mode().Perm() != os.FileMode(f.Mode) {
			t.Errorf("%s mode %v, want %o", f.Name, st.Mode(), f.Mode)
		}
	}
}

// TestCSIFlowInVM: the plugin's controller and node services with the nvme
// transport, through a volume's whole life (ext4, xfs, block), in the VM.
func TestCSIFlowInVM(t *testing.T) {
	runGuest(t, "csi-flow", "^TestCSIFlow$", 5*time.Minute)
}

// TestSanityInVM: csi-sanity against the plugin with the nvme transport.
func TestSanityInVM(t *testing.T) {
	runGuest(t, "sanity", "^TestSanity$", 8*time.Minute)
}

// BenchmarkTransportVM measures a whole VM run of the transport guest test:
// boot, modprobe, nvmet export, NVMe/TCP connects, mkfs, I/O, grow, teardown,
// power-off. Reported as seconds of VM wall time per run.
func BenchmarkTransportVM(b *testing.B) {
	setup(b)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		total += runGuest(b, "transport-bench", "^TestTransport", 4*time.Minute).Elapsed
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "vm-s/run")
}

// TestGuestInitrdAlignsAppendedArchive: the kernel reads an appended
// uncompressed cpio only at a 4-byte aligned offset (else "Initramfs unpacking
// failed: invalid magic"), and a gzip'd base initrd has any length.
func TestGuestInitrdAlignsAppendedArchive(t *testing.T) {
	dir := t.TempDir()
	for _, baseLen := range []int{8, 9, 10, 11} {
		base := filepath.Join(dir, "initrd.gz")
		guest := filepath.Join(dir, "guest")
		os.WriteFile(base, bytes.Repeat([]byte{0x1f}, baseLen), 0o644)
		os.WriteFile(guest, []byte("binary"), 0o755)
		path, err := guestInitrd(RunOptions{Image: &Image{Initrd: base}, Guest: guest, Args: []string{"-test.v"}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		os.Remove(path)
		off := (baseLen + 3) &^ 3
		if !bytes.HasPrefix(b[off:], []byte("070701")) || !bytes.Equal(b[baseLen:off], make([]byte, off-baseLen)) {
			t.Errorf("base of %d bytes: appended archive not at offset %d after NUL padding: % x", baseLen, off, b[baseLen:off+6])
		}
	}
}
