package testutil

import (
	"fmt"
	"os"
	"syscall"
)

// localClusterLock serializes the test packages that bring up the machine's one
// local kubelet cluster (hack/cluster: fixed ports, /var/lib/kubelet, one
// containerd): `go test ./...` runs packages in parallel.
const localClusterLock = "/run/lock/csi-hub-local-cluster.lock"

// LockLocalCluster blocks until this process holds the local cluster, and
// returns the function that lets the next package have it.
//
// In unit mode (CSI_HUB_UNIT=1) it refuses: whoever holds the lock brings the
// cluster up next.
func LockLocalCluster(logf func(string, ...any)) (unlock func(), err error) {
	if err := RefuseInUnitMode("the local kubelet cluster (hack/cluster/up.sh)"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll("/run/lock", 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(localClusterLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		logf("waiting for another test package that holds the local cluster (%s)", localClusterLock)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", localClusterLock, err)
		}
	}
	return func() { f.Close() }, nil
}
