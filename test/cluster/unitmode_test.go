package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/csi-hub/csi-hub/internal/testutil"
)

// TestUnitModeStartsNothing: with CSI_HUB_UNIT=1 (make unit) Start, the one
// way to a control plane, returns ErrUnitMode, records the attempt for make
// unit's check, and leaves no etcd or kube-apiserver child behind.
func TestUnitModeStartsNothing(t *testing.T) {
	spawnLog := filepath.Join(t.TempDir(), "spawns")
	// Outside `make unit` this package's TestMain has started the shared
	// cluster: only children that appear during this test count.
	before := map[string]bool{}
	for _, k := range childrenNamed(t, os.Getpid(), "etcd", "kube-apiserver", "kube-controller", "true") {
		before[k] = true
	}
	t.Setenv(testutil.UnitEnv, "1")
	t.Setenv(testutil.UnitSpawnLogEnv, spawnLog)
	c, err := Start(Options{Logf: t.Logf})
	if c != nil {
		c.Stop()
		t.Fatal("Start started a cluster in unit mode")
	}
	if !errors.Is(err, testutil.ErrUnitMode) {
		t.Fatalf("Start in unit mode: %v, want ErrUnitMode", err)
	}
	b, err := os.ReadFile(spawnLog)
	if err != nil || !strings.Contains(string(b), "tried to start a test cluster") {
		t.Fatalf("spawn log %q, %v: want the refused start recorded", b, err)
	}
	if _, err := startProcess("etcd", filepath.Join(t.TempDir(), "log"), "/bin/true"); !errors.Is(err, testutil.ErrUnitMode) {
		t.Fatalf("startProcess in unit mode: %v, want ErrUnitMode", err)
	}
	var kids []string
	for _, k := range childrenNamed(t, os.Getpid(), "etcd", "kube-apiserver", "kube-controller", "true") {
		if !before[k] {
			kids = append(kids, k)
		}
	}
	if len(kids) > 0 {
		t.Fatalf("children started in unit mode: %v", kids)
	}
	if _, err := testutil.LockLocalCluster(t.Logf); !errors.Is(err, testutil.ErrUnitMode) {
		t.Fatalf("LockLocalCluster in unit mode: %v, want ErrUnitMode", err)
	}
}

// childrenNamed lists the processes whose parent is ppid and whose comm is one of names.
func childrenNamed(t *testing.T, ppid int, names ...string) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ...
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		comm, rest := s[open+1:end], strings.Fields(s[end+1:])
		if len(rest) < 2 || rest[1] != strconv.Itoa(ppid) {
			continue
		}
		for _, n := range names {
			if comm == n {
				found = append(found, strings.TrimSuffix(filepath.Dir(p), "/stat")+" "+comm)
			}
		}
	}
	return found
}
