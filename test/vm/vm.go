// Package vm boots the project's NVMe/TCP test VM: a Debian cloud kernel under
// qemu TCG with nvmet, nvme-tcp and nvme-cli (built by hack/vm/build.sh), which
// runs a static Go test binary of test/vm/guest as its /test and reports the
// result on the serial console. The host kernel has no nvmet, nvme-tcp or
// configfs, so this is where the nvme transport meets the real kernel.
package vm

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/csi-hub/csi-hub/internal/testutil"
)

// ResultMarker starts the line /init prints when /test has finished.
const ResultMarker = "CSI-HUB-VM-RESULT:"

var resultLine = regexp.MustCompile(`CSI-HUB-VM-RESULT: (PASS|FAIL) rc=(-?[0-9]+)`)

// Image is a built kernel and base initramfs.
type Image struct {
	Dir     string // ${CSI_HUB_CACHE}/vm-<kernel version>
	Kernel  string
	Initrd  string
	Version string
}

// ErrNoImage: `make test-deps` (hack/vm/build.sh) has not built the image
// that matches the current build script.
var ErrNoImage = errors.New("no current VM image in the cache: run `make test-deps` (hack/vm/build.sh) first")

// CachedImage finds the image hack/vm/build.sh built into
// ${CSI_HUB_CACHE:-~/.cache/csi-hub}/vm-<kernel>, current for this build.sh
// (its stamp is the script's sha256 prefix, as build.sh writes it). Tests
// only look the image up: building it (apt, a kernel download) belongs to
// `make test-deps`, never to a test racing its deadline.
func CachedImage(repo string) (*Image, error) {
	script, err := os.ReadFile(filepath.Join(repo, "hack", "vm", "build.sh"))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(script)
	stamp := hex.EncodeToString(sum[:])[:16]
	cache := os.Getenv("CSI_HUB_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "/root"
		}
		cache = filepath.Join(home, ".cache", "csi-hub")
	}
	dirs, _ := filepath.Glob(filepath.Join(cache, "vm-*"))
	for _, dir := range dirs {
		if got, err := os.ReadFile(filepath.Join(dir, "stamp")); err != nil || strings.TrimSpace(string(got)) != stamp {
			continue
		}
		img := &Image{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.gz")}
		if _, err := os.Stat(img.Kernel); err != nil {
			continue
		}
		if _, err := os.Stat(img.Initrd); err != nil {
			continue
		}
		v, _ := os.ReadFile(filepath.Join(dir, "kernel-version"))
		img.Version = strings.TrimSpace(string(v))
		return img, nil
	}
	return nil, fmt.Errorf("%w (looked in %s/vm-*/ for stamp %s)", ErrNoImage, cache, stamp)
}

// RunOptions describes one boot.
type RunOptions struct {
	Image *Image
	// Guest is the static test binary that becomes /test.
	Guest string
	// Args are the arguments /init passes to /test (e.g. -test.run=...).
	Args []string
	// Executables are more files for the initramfs: name there -> host path.
	Executables map[string]string
	// Log receives the serial console (kernel messages and the test's output).
	Log io.Writer
	// Timeout kills qemu (default 5 minutes).
	Timeout time.Duration
	// MemoryMiB is the guest's RAM (default 1024).
	MemoryMiB int
	// UUID is the machine UUID, which becomes the guest's host NQN.
	UUID string
	// QemuArgs are appended to qemu's command line (NICs, disks, a monitor).
	QemuArgs []string
}

// Result is what a boot reported.
type Result struct {
	Passed   bool
	ExitCode int
	Elapsed  time.Duration // qemu start to exit
}

// Run boots the VM with the guest binary appended to the initramfs and waits
// for the result line. A VM that never prints it (panic, hang, timeout) is an
// error, not a failed result.
func Run(ctx context.Context, o RunOptions) (Result, error) {
	m, err := Start(ctx, o)
	if err != nil {
		return Result{}, err
	}
	return m.Wait()
}

// Machine is a running VM (see Start).
type Machine struct {
	cmd     *exec.Cmd
	cancel  context.CancelFunc
	ctx     context.Context
	initrd  string
	timeout time.Duration
	done    chan struct{}
	res     Result
	err     error
}

// Start boots the VM like Run but returns once qemu runs; Wait collects the
// result and Kill pulls the plug (a crash or power cut, for fault tests).
func Start(ctx context.Context, o RunOptions) (*Machine, error) {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 1024
	}
	if o.UUID == "" {
		o.UUID = "3f2a6c1e-0c51-4b1d-9a57-c5b0b1ad0001"
	}
	if err := testutil.RefuseInUnitMode("qemu-system-x86_64"); err != nil {
		return nil, err
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, err
	}
	initrd, err := guestInitrd(o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	// TCG, not KVM: the host's /dev/kvm is a nested software hypervisor that a
	// stock kernel dies under. -cpu max gives RDRAND, without which mkfs waits
	// seconds for entropy; -uuid makes a stable DMI UUID, hence host NQN.
	args := []string{"-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", strconv.Itoa(o.MemoryMiB),
		"-nographic", "-no-reboot", "-nic", "none", "-uuid", o.UUID,
		"-kernel", o.Image.Kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet"}
	cmd := exec.CommandContext(ctx, qemu, append(args, o.QemuArgs...)...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.WaitDelay = 5 * time.Second
	m := &Machine{cmd: cmd, cancel: cancel, ctx: ctx, initrd: initrd, timeout: o.Timeout, done: make(chan struct{}), res: Result{ExitCode: -1}}
	found := make(chan struct{})
	go func() {
		defer close(found)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if o.Log != nil {
				fmt.Fprintln(o.Log, line)
			}
			if r := resultLine.FindStringSubmatch(line); r != nil {
				m.res.Passed = r[1] == "PASS"
				m.res.ExitCode, _ = strconv.Atoi(r[2])
			}
		}
	}()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		<-found
		cancel()
		os.Remove(initrd)
		return nil, err
	}
	go func() {
		runErr := cmd.Wait()
		pw.Close()
		<-found
		m.res.Elapsed = time.Since(start)
		if m.res.ExitCode == -1 {
			if ctx.Err() != nil {
				m.err = fmt.Errorf("VM printed no %s line within %v", ResultMarker, o.Timeout)
			} else {
				m.err = fmt.Errorf("VM exited (%v) without a %s line", runErr, ResultMarker)
			}
		}
		os.Remove(initrd)
		cancel()
		close(m.done)
	}()
	return m, nil
}

// Wait waits for qemu to exit and returns what the VM reported.
func (m *Machine) Wait() (Result, error) {
	<-m.done
	return m.res, m.err
}

// Done is closed when qemu has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Kill ends qemu at once, as a power cut would, and waits for it.
func (m *Machine) Kill() {
	if m.cmd.Process != nil {
		m.cmd.Process.Kill()
	}
	<-m.done
}

// guestInitrd writes the base initramfs followed by a cpio with /test and
// /test.args, and returns its path.
func guestInitrd(o RunOptions) (string, error) {
	base, err := os.ReadFile(o.Image.Initrd)
	if err != nil {
		return "", err
	}
	bin, err := os.ReadFile(o.Guest)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "csi-hub-initrd-")
	if err != nil {
		return "", err
	}
	w := bufio.NewWriter(f)
	w.Write(base)
	// The kernel takes an uncompressed cpio only at a 4-byte aligned offset and
	// skips NULs between archives: pad the gzip'd base to the next boundary.
	w.WriteString(pad(len(base)))
	files := []cpioFile{
		{Name: "test", Mode: 0o755, Data: bin},
		{Name: "test.args", Mode: 0o644, Data: []byte(strings.Join(o.Args, " ") + "\n")},
	}
	for name, path := range o.Executables {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			return "", err
		}
		files = append(files, cpioFile{Name: name, Mode: 0o755, Data: data})
	}
	err = writeCPIO(w, files)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
