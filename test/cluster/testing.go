package cluster

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/csi-hub/csi-hub/internal/testutil"
)

// inCI reports whether start-up failures must fail rather than skip.
func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1" || v == "yes"
}

// skippable reports whether err may turn into a skip: only a missing
// prerequisite, and never in CI, where the scripts must have provided it.
func skippable(err error) bool {
	return errors.Is(err, ErrPrerequisite) && !inCI()
}

// StartT starts a cluster for one test and stops it in t.Cleanup, dumping the
// component logs first if the test failed. It skips the test loudly when the
// machine lacks a prerequisite (outside CI) and fails it on any other error.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	testutil.SkipUnit(t, "a control plane (etcd, kube-apiserver, kube-controller-manager)")
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := Start(opts)
	if err != nil {
		if skippable(err) {
			t.Skipf("SKIPPING: no test cluster on this machine (set CI=true to make this a failure): %v", err)
		}
		t.Fatalf("test cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.DumpLogs(60))
		}
		c.Stop()
	})
	return c
}

// DumpLogs returns the last n lines of every component's log, for failure reports.
func (c *Cluster) DumpLogs(n int) string {
	var b strings.Builder
	for _, name := range c.Components() {
		fmt.Fprintf(&b, "===== last %d lines of %s =====\n%s\n", n, name, c.LogTail(name, n))
	}
	return b.String()
}

// shared is the package-wide cluster set up by Main.
var shared struct {
	sync.Mutex
	cluster *Cluster
	err     error
	started bool
}

// Main starts one cluster for a test package, runs its tests, and stops the
// cluster; use it as os.Exit(cluster.Main(m, opts)) in TestMain. Tests get the
// cluster from Shared. If the cluster cannot start, the tests still run and
// Shared skips or fails each of them with the reason; tests that do not call
// Shared are unaffected. After failed tests the component log tails are
// printed to standard error.
//
// In unit mode (make unit: CSI_HUB_UNIT=1, or go test -short) no cluster is
// started and Shared skips every test that asks for it.
func Main(m *testing.M, opts Options) int {
	if !flag.Parsed() {
		flag.Parse() // for -short; m.Run does not parse again
	}
	if testutil.UnitMode() {
		shared.Lock()
		shared.err, shared.started = testutil.ErrUnitMode, true
		shared.Unlock()
		return m.Run()
	}
	c, err := Start(opts)
	shared.Lock()
	shared.cluster, shared.err, shared.started = c, err, true
	shared.Unlock()
	if err != nil {
		fmt.Fprintf(os.Stderr, "test/cluster: cluster did not start: %v\n", err)
	}
	code := m.Run()
	if c != nil {
		if code != 0 {
			fmt.Fprint(os.Stderr, c.DumpLogs(60))
		}
		if err := c.Check(); err != nil {
			fmt.Fprintf(os.Stderr, "test/cluster: a component died during the tests: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		c.Stop()
	}
	return code
}

// Shared returns the cluster started by Main, skipping t loudly if the machine
// lacks a prerequisite (outside CI) and failing it on any other start error.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.Lock()
	c, err, started := shared.cluster, shared.err, shared.started
	shared.Unlock()
	switch {
	case !started:
		t.Fatal("cluster.Shared called without cluster.Main in TestMain")
	case errors.Is(err, testutil.ErrUnitMode):
		testutil.SkipUnit(t, "a control plane (etcd, kube-apiserver, kube-controller-manager)")
		t.Fatalf("test cluster: %v", err) // not reached: ErrUnitMode only in unit mode
	case err != nil && skippable(err):
		t.Skipf("SKIPPING: no test cluster on this machine (set CI=true to make this a failure): %v", err)
	case err != nil:
		t.Fatalf("test cluster did not start: %v", err)
	}
	return c
}
