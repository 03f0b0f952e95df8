package cluster

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// Options selects the optional parts of a cluster. The zero value gives
// etcd + kube-apiserver + kube-controller-manager.
type Options struct {
	// WithScheduler starts kube-scheduler (needed for WaitForFirstConsumer
	// and for pods without spec.nodeName).
	WithScheduler bool
	// WithSnapshotController installs the snapshot.storage.k8s.io CRDs and
	// starts the snapshot-controller.
	WithSnapshotController bool
	// FeatureGates are passed to kube-apiserver, kube-controller-manager and
	// kube-scheduler (not to snapshot-controller, which has its own gates),
	// e.g. {"MutableCSINodeAllocatableCount": true}.
	FeatureGates map[string]bool
	// Extra flags appended to a component's command line (they win over the
	// defaults, as the last occurrence of a flag counts), e.g.
	// ControllerManagerFlags: []string{"--attach-detach-reconcile-sync-period=5s"}.
	APIServerFlags         []string
	ControllerManagerFlags []string
	SchedulerFlags         []string
	// SnapshotControllerFlags are appended to the snapshot-controller's, e.g.
	// --enable-distributed-snapshotting.
	SnapshotControllerFlags []string
	// LogDir receives each process's combined stdout/stderr as <component>.log
	// and is kept after Stop. Empty: logs live in the cluster's own directory
	// and are removed with it (dump them with LogTail first).
	LogDir string
	// BaseDir is where the cluster's directory is created. Default: os.TempDir().
	BaseDir string
	// StartTimeout bounds the whole start-up, excluding building binaries.
	// Default: 2 minutes (the machines are small and shared).
	StartTimeout time.Duration
	// Logf receives progress messages. Default: standard error.
	Logf func(format string, args ...any)
}

func (o *Options) setDefaults() {
	if o.BaseDir == "" {
		o.BaseDir = os.TempDir()
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "[test/cluster] "+format+"\n", args...)
		}
	}
}

// featureGatesFlag renders FeatureGates as one --feature-gates flag, or nil.
func (o *Options) featureGatesFlag() []string {
	if len(o.FeatureGates) == 0 {
		return nil
	}
	gates := make([]string, 0, len(o.FeatureGates))
	for name, on := range o.FeatureGates {
		gates = append(gates, fmt.Sprintf("%s=%t", name, on))
	}
	sort.Strings(gates)
	return []string{"--feature-gates=" + strings.Join(gates, ",")}
}
