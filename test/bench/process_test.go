package bench

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/internal/checkout"
	"github.com/csi-hub/csi-hub/test/cluster"
)

// csiHubBinary is the csi-hub binary under measurement: CSI_HUB_BENCH_BINARY
// (to measure another revision), else the one `make build` leaves in
// _output/bin (make scale builds it first). Benchmarks never build it
// themselves: a build would compete with the measurement for the CPU.
func csiHubBinary(b testing.TB) string {
	bin := os.Getenv("CSI_HUB_BENCH_BINARY")
	if bin == "" {
		bin = filepath.Join(checkout.Root(), "_output", "bin", "csi-hub")
	}
	if _, err := os.Stat(bin); err != nil {
		b.Fatalf("csi-hub binary: %v (run `make build` first, or set CSI_HUB_BENCH_BINARY)", err)
	}
	return bin
}

// sidecarBinary builds (once per machine, cached) the official sidecar
// external-<name> and returns the path of its csi-<name> binary.
func sidecarBinary(b testing.TB, name string) string {
	bin, err := cluster.SidecarBinary(name)
	if err != nil {
		b.Fatal(err)
	}
	return bin
}

// process is a controller process under measurement.
type process struct {
	cmd *exec.Cmd
	log string
}

func startProcess(b testing.TB, bin string, args ...string) *process {
	b.Helper()
	return startProcessEnv(b, nil, bin, args...)
}

// startProcessEnv is startProcess with env added to the test's environment.
func startProcessEnv(b testing.TB, env []string, bin string, args ...string) *process {
	b.Helper()
	log := filepath.Join(b.TempDir(), filepath.Base(bin)+".log")
	f, err := os.Create(log)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &process{cmd: cmd, log: log}
	b.Cleanup(p.stop)
	return p
}

// peakRSSMiB is the process's high-water resident set (VmHWM).
func (p *process) peakRSSMiB() float64 { return p.rssMiB("VmHWM:") }

// rssMiB reads one memory line (VmRSS:, VmHWM:) of the process's status.
func (p *process) rssMiB(field string) float64 {
	f, err := os.Open("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

func (p *process) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
