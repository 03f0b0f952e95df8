package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const crashChildEnv = "CSI_HUB_CLUSTER_CRASH_CHILD"

// TestCrashedRunLeavesNoProcesses runs this test binary again as a child that
// starts a cluster and then gets SIGKILLed, like a test run killed by a CI
// timeout: no Stop runs, yet the components must die with it.
func TestCrashedRunLeavesNoProcesses(t *testing.T) {
	Shared(t) // same prerequisites
	child := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
	child.Env = append(os.Environ(), crashChildEnv+"=1")
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()

	var pids []int
	scanner := bufio.NewScanner(out)
	for scanner.Scan() {
		if pidList, ok := strings.CutPrefix(scanner.Text(), "CHILD PIDS:"); ok {
			for _, f := range strings.Fields(pidList) {
				var pid int
				fmt.Sscan(f, &pid)
				pids = append(pids, pid)
			}
			break
		}
	}
	if len(pids) < 3 {
		t.Fatalf("child did not report its cluster's pids (got %v)", pids)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("component pid %d survived the SIGKILLed test process (kill -0: %v)", pid, err)
		}
	}
}

// TestCrashChild is the child half of TestCrashedRunLeavesNoProcesses.
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashChildEnv) != "1" {
		t.Skip("only runs as the child of TestCrashedRunLeavesNoProcesses")
	}
	c := Shared(t)
	var pids []string
	for _, p := range c.processes {
		pids = append(pids, fmt.Sprint(p.cmd.Process.Pid))
	}
	fmt.Println("CHILD PIDS:", strings.Join(pids, " "))
	time.Sleep(time.Minute) // killed long before
}
