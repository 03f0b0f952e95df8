package testutil

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"
)

// UnitEnv is the environment variable `make unit` sets to 1: run only the
// tests that need no control plane, kubelet or VM. The starters of those
// (test/cluster, hack/cluster/up.sh through LockLocalCluster, test/vm) then
// skip their tests loudly, and refuse to start anything if called anyway.
const UnitEnv = "CSI_HUB_UNIT"

// UnitSpawnLogEnv names a file to which a starter refused in unit mode
// appends one line per refused process; `make unit` fails when it is not
// empty afterwards, so a test that reaches a starter without going through
// the skip (a new TestMain, say) cannot go unnoticed.
const UnitSpawnLogEnv = "CSI_HUB_UNIT_SPAWN_LOG"

// ErrUnitMode is what a starter returns instead of starting a cluster
// process or a VM in unit mode.
var ErrUnitMode = errors.New("unit mode (" + UnitEnv + "=1 or go test -short): no etcd, kube-apiserver, kubelet or VM is started")

// UnitMode reports whether only unit tests run: CSI_HUB_UNIT=1, or go test
// -short once the test flags are parsed.
func UnitMode() bool {
	if os.Getenv(UnitEnv) == "1" {
		return true
	}
	return flag.Parsed() && flag.Lookup("test.short") != nil && testing.Short()
}

// SkipUnit skips t, loudly, in unit mode; what says what the test would start.
func SkipUnit(t testing.TB, what string) {
	t.Helper()
	if UnitMode() {
		t.Skipf("SKIPPING in unit mode (make unit / go test -short): this test starts %s", what)
	}
}

// RefuseInUnitMode is called by a starter just before it starts the process
// name (etcd, kube-apiserver, qemu, hack/cluster/up.sh, ...). Only when
// CSI_HUB_UNIT=1 it records the attempt in $CSI_HUB_UNIT_SPAWN_LOG and
// returns an error wrapping ErrUnitMode; otherwise nil. (-short alone does not
// refuse: there the starters' callers skip, and a direct caller may still
// start what it needs.)
func RefuseInUnitMode(name string) error {
	if os.Getenv(UnitEnv) != "1" {
		return nil
	}
	if p := os.Getenv(UnitSpawnLogEnv); p != "" {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
			wd, _ := os.Getwd()
			fmt.Fprintf(f, "%s: pid %d (%s in %s) tried to start %s\n", UnitEnv, os.Getpid(), os.Args[0], wd, name)
			f.Close()
		}
	}
	return fmt.Errorf("refusing to start %s: %w", name, ErrUnitMode)
}
