package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/csi-hub/csi-hub/internal/testutil"
)

// process is one child of the cluster, in its own process group so that
// stopping it also stops anything it spawned.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed
}

// startProcess starts bin with args, its stdout and stderr appended to logPath.
func startProcess(name, logPath, bin string, args ...string) (*process, error) {
	if err := testutil.RefuseInUnitMode(name); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child keeps its own descriptor
	fmt.Fprintf(logFile, "+ %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the test binary dies without running Stop (timeout panic, SIGKILL),
		// the kernel kills the children instead of leaving them holding ports.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, with its exit error.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid // Setpgid: the group id is the leader's pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Children that outlived the leader (none expected) still get killed.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// logTail returns the last n lines of the process's log.
func (p *process) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	return tail(string(data), n)
}

// deadError describes a process that exited while the cluster waited for it.
func (p *process) deadError() error {
	exited, err := p.exited()
	if !exited {
		return nil
	}
	return fmt.Errorf("%s exited (%v); last log lines of %s:\n%s", p.name, err, p.logPath, p.logTail(30))
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1. They are drawn
// below the kernel's ephemeral range, because the cluster's own outgoing
// connections (and those of other tests) take ephemeral ports and could grab a
// port between reservation and bind. All listeners are held until every port
// is chosen so none is returned twice. Another process can still bind a port
// first; Start then retries with new ports.
func freePorts(n int) ([]int, error) {
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	low, high := 10000, ephemeralPortLow()
	ports := make([]int, 0, n)
	for attempt := 0; len(ports) < n && attempt < 1000; attempt++ {
		addr := "127.0.0.1:0" // fallback when the ephemeral range starts too low
		if high-low > 1000 {
			addr = "127.0.0.1:" + strconv.Itoa(low+rand.IntN(high-low))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("found only %d of %d free ports", len(ports), n)
	}
	return ports, nil
}

// ephemeralPortLow returns the first port of the kernel's ephemeral range.
func ephemeralPortLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var low, high int
	if _, err := fmt.Sscan(string(data), &low, &high); err != nil {
		return 32768
	}
	return low
}

// isAddrInUse reports whether a start failure came from a port taken by
// someone else after freePorts chose it.
func isAddrInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "address already in use")
}

// ownerFile marks a cluster directory with the pid of the test process that
// created it, so later runs can remove directories of crashed runs.
const ownerFile = "owner.pid"

// dirPrefix names cluster directories under BaseDir (and /dev/shm for etcd).
const dirPrefix = "csi-hub-cluster-"

// removeStaleDirs deletes cluster directories whose owning process is gone.
// Only cleanup: a new cluster never depends on it, as its dirs are fresh.
func removeStaleDirs(base string) {
	matches, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
	for _, dir := range matches {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being created
		}
		var pid int
		if _, err := fmt.Sscanf(string(data), "%d", &pid); err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // owner alive
		}
		_ = os.RemoveAll(dir)
	}
}
