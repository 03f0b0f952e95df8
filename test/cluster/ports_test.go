package cluster

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestFreePortsAreDistinctBindableAndNotEphemeral(t *testing.T) {
	ports, err := freePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	low := ephemeralPortLow()
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Errorf("port %d returned twice", p)
		}
		seen[p] = true
		if low > 11000 && (p < 10000 || p >= low) {
			t.Errorf("port %d outside [10000, %d): outgoing connections could take it", p, low)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Errorf("port %d not bindable after freePorts: %v", p, err)
			continue
		}
		l.Close()
	}
}

func TestIsAddrInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = net.Listen("tcp", l.Addr().String())
	if !isAddrInUse(fmt.Errorf("wrapped: %w", err)) {
		t.Errorf("isAddrInUse(%v) = false", err)
	}
	if isAddrInUse(errors.New("unknown flag")) || isAddrInUse(nil) {
		t.Error("isAddrInUse true for an unrelated error")
	}
}

func TestSkippableOnlyForPrerequisitesOutsideCI(t *testing.T) {
	prereq := fmt.Errorf("start: %w: etcd not found", ErrPrerequisite)
	t.Setenv("CI", "")
	if !skippable(prereq) {
		t.Error("a missing prerequisite outside CI must skip")
	}
	if skippable(errors.New("kube-apiserver exited")) {
		t.Error("a component failure must never skip")
	}
	t.Setenv("CI", "true")
	if skippable(prereq) {
		t.Error("in CI a missing prerequisite must fail, not skip")
	}
}

func TestEnsureBinariesFindsKubectl(t *testing.T) {
	Shared(t) // same prerequisites
	dir, err := EnsureBinaries("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(dir, "kubectl"), "version", "--client", "-o", "json").Output()
	if err != nil {
		t.Fatalf("kubectl version: %v", err)
	}
	// The build stamps the version; unstamped binaries say v0.0.0-master.
	if !strings.Contains(string(out), `"gitVersion": "v1.34.4"`) {
		t.Errorf("kubectl reports %s", out)
	}
}
