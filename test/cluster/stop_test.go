package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopLeavesNothing starts a second, minimal cluster next to the shared
// one (so parallel clusters work), stops it, and checks that no process,
// listening port or directory is left behind.
func TestStopLeavesNothing(t *testing.T) {
	Shared(t) // same prerequisites; skips or fails the same way
	c, err := Start(Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("second cluster: %v", err)
	}
	fmt.Printf("STARTUP minimal cluster (etcd, apiserver, controller-manager): %.1fs\n", c.Startup.Seconds())
	t.Logf("minimal cluster started in %.1fs", c.Startup.Seconds())

	var pids []int
	for _, p := range c.processes {
		pids = append(pids, p.cmd.Process.Pid)
	}
	ports := []int{c.ports.etcdClient, c.ports.etcdPeer, c.ports.apiServer, c.ports.controllerManager}
	dirs := []string{c.Dir, c.etcdDir}
	if len(pids) != 3 {
		t.Fatalf("expected 3 processes, got %d", len(pids))
	}

	c.Stop()
	c.Stop() // idempotent

	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Stop (kill -0: %v)", pid, err)
		}
	}
	for _, port := range ports {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			conn.Close()
			t.Errorf("port %d still accepts connections after Stop", port)
		}
	}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("directory %s still exists after Stop (stat: %v)", dir, err)
		}
	}
}

// TestRemoveStaleDirs checks that directories of crashed runs are removed and
// live ones are kept.
func TestRemoveStaleDirs(t *testing.T) {
	base := t.TempDir()
	live, err := makeOwnedDir(base)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := os.MkdirTemp(base, dirPrefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	// A pid far above pid_max cannot be alive.
	if err := os.WriteFile(stale+"/"+ownerFile, []byte("2147483646"), 0o644); err != nil {
		t.Fatal(err)
	}
	removeStaleDirs(base)
	if _, err := os.Stat(live); err != nil {
		t.Errorf("live dir removed: %v", err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale dir kept: %v", err)
	}
}

// TestStartFailureIsClearAndClean gives kube-apiserver a bad flag: Start must
// fail with the component's own complaint and leave nothing behind.
func TestStartFailureIsClearAndClean(t *testing.T) {
	Shared(t)
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	c, err := Start(Options{Logf: t.Logf, APIServerFlags: []string{"--no-such-flag=1"}})
	if err == nil {
		c.Stop()
		t.Fatal("Start succeeded with an invalid kube-apiserver flag")
	}
	t.Logf("Start error (as a test author would see it):\n%v", err)
	for _, want := range []string{"kube-apiserver exited", "unknown flag: --no-such-flag"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q", want)
		}
	}
	if errors.Is(err, ErrPrerequisite) {
		t.Error("a component failure must not be classed as a missing prerequisite (it would be skipped)")
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range after {
		if !slices.Contains(before, dir) && strings.Contains(err.Error(), dir) {
			t.Errorf("failed Start left its directory %s", dir)
		}
	}
}
