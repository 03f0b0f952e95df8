package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/csi-hub/csi-hub/internal/checkout"
	"github.com/csi-hub/csi-hub/internal/testutil"
)

const (
	driverName   = "block.csi-hub.io"
	hubNamespace = "csi-hub"
	// Written by hack/cluster/up.sh (same defaults as hack/cluster/lib.sh).
	kubeconfigPath = "/var/lib/csi-hub-cluster/admin.kubeconfig"
	poolDir        = "/var/lib/csi-hub/pool"
	nodeStateDir   = "/var/lib/csi-hub/node"
	kubeletDir     = "/var/lib/kubelet"
	busyboxImage   = "csi-hub.local/busybox:dev"
	nodeName       = "csi-hub-node"
)

// env is the cluster every test shares; skipReason is set when the machine
// cannot run one (then every cluster test skips, loudly).
var env struct {
	kube       kubernetes.Interface
	snap       snapclient.Interface
	skipReason string
}

// TestMain brings the cluster up with hack/cluster/up.sh (the same script as
// `make cluster-up`, so manifests/ are applied exactly as a user would) and
// tears it down with hack/cluster/down.sh. With CSI_HUB_E2E_REUSE=1 a cluster
// that is already up is used and left running.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	// The scenarios mostly wait on the cluster, not on the CPU: run them all
	// at once unless -parallel was given (its default is GOMAXPROCS).
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "8")
	}
	if testutil.UnitMode() {
		env.skipReason = "unit mode (make unit / go test -short): the e2e suite brings up the local kubelet cluster"
		fmt.Fprintln(os.Stderr, "!!! test/e2e: SKIPPING every cluster test:", env.skipReason)
		return m.Run()
	}
	if os.Geteuid() != 0 {
		env.skipReason = "the e2e suite runs a kubelet, containerd, mounts and loop devices: it needs root"
		fmt.Fprintln(os.Stderr, "!!! test/e2e: SKIPPING every cluster test:", env.skipReason)
		return m.Run()
	}
	unlock, err := testutil.LockLocalCluster(func(f string, a ...any) { fmt.Fprintf(os.Stderr, "test/e2e: "+f+"\n", a...) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/e2e:", err)
		return 1
	}
	defer unlock()
	reuse := os.Getenv("CSI_HUB_E2E_REUSE") == "1" && clusterUp()
	if !reuse {
		start := time.Now()
		if err := script("up.sh"); err != nil {
			fmt.Fprintf(os.Stderr, "test/e2e: cluster did not come up: %v\n", err)
			_ = script("down.sh")
			return 1
		}
		fmt.Fprintf(os.Stderr, "test/e2e: cluster up in %.0fs\n", time.Since(start).Seconds())
	} else {
		fmt.Fprintln(os.Stderr, "test/e2e: reusing the running cluster (CSI_HUB_E2E_REUSE=1)")
	}
	code := 1
	if err := connect(); err != nil {
		fmt.Fprintf(os.Stderr, "test/e2e: %v\n", err)
	} else {
		code = m.Run()
	}
	if !reuse {
		start := time.Now()
		if err := script("down.sh"); err != nil {
			fmt.Fprintf(os.Stderr, "test/e2e: teardown did not leave the machine clean: %v\n", err)
			code = 1
		}
		fmt.Fprintf(os.Stderr, "test/e2e: cluster down in %.0fs\n", time.Since(start).Seconds())
		if dirty := machineDirty(); len(dirty) > 0 {
			fmt.Fprintf(os.Stderr, "test/e2e: FAIL: teardown left on the machine:\n  %s\n", strings.Join(dirty, "\n  "))
			code = 1
		} else {
			fmt.Fprintln(os.Stderr, "test/e2e: machine clean after teardown (no cluster processes, mounts, loop devices, bridge, iptables chains or state dirs)")
		}
	}
	return code
}

func script(name string) error {
	cmd := exec.Command(filepath.Join(checkout.Root(), "hack", "cluster", name))
	cmd.Dir = checkout.Root()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

func clusterUp() bool {
	if _, err := os.Stat(kubeconfigPath); err != nil {
		return false
	}
	if connect() != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := env.kube.CoreV1().Nodes().Get(ctx, nodeName, metav1GetOptions)
	return err == nil
}

func connect() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", kubeconfigPath, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	if env.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	env.snap, err = snapclient.NewForConfig(cfg)
	return err
}

// needCluster skips (loudly) when the machine cannot run the cluster.
func needCluster(t *testing.T) {
	t.Helper()
	if env.skipReason != "" {
		t.Skip("SKIPPING: " + env.skipReason)
	}
}

// dumpOnFailure logs what helps to understand a failed test: the hub's and
// the driver's recent logs are in /tmp/csi-hub-cluster-logs and the pods.
func dumpOnFailure(t *testing.T, ns string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		kubectl := kubectlPath(t)
		for _, args := range [][]string{
			{"get", "pvc,pv,volumeattachments,volumesnapshots,volumesnapshotcontents,pods", "-A", "-o", "wide"},
			{"-n", ns, "get", "events", "--sort-by=.lastTimestamp"},
			{"-n", hubNamespace, "logs", "deploy/csi-hub-controller", "--all-containers", "--tail=40"},
			{"-n", hubNamespace, "logs", "ds/csi-hub-node", "--all-containers", "--tail=40"},
		} {
			out, _ := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfigPath}, args...)...).CombinedOutput()
			t.Logf("$ kubectl %s\n%s", strings.Join(args, " "), out)
		}
	})
}
