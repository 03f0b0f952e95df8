package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csi-hub/csi-hub/plugin/pool"
)

var metav1GetOptions = metav1.GetOptions{}

const (
	// Every step here takes seconds when it works; failing ones should fail
	// within the suite's budget.
	shortWait = 90 * time.Second
	poll      = 500 * time.Millisecond
)

// newNamespace creates a namespace for one test. Its cleanup deletes the
// namespace's pods, snapshots and claims and checks that every volume the test
// provisioned is really gone: PV, backing file, mounts and loop devices.
func newNamespace(t *testing.T, name string) string {
	t.Helper()
	needCluster(t)
	ctx := context.Background()
	// A fresh name per run: a namespace of an interrupted earlier run may still exist.
	ns := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-" + name + "-"}}
	ns, err := env.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	// The default ServiceAccount is created asynchronously; pods need it.
	waitFor(t, "default ServiceAccount in "+ns.Name, shortWait, func(ctx context.Context) (bool, error) {
		_, err := env.kube.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	// Cleanups run last-in first-out: dump the state before deleting it.
	t.Cleanup(func() { deleteEverything(t, ns.Name) })
	dumpOnFailure(t, ns.Name)
	return ns.Name
}

// deleteEverything deletes a test namespace's workloads and volumes and
// verifies nothing of them is left anywhere.
func deleteEverything(t *testing.T, ns string) {
	ctx := context.Background()
	pvs := boundVolumes(t, ns)
	zero := int64(0)
	bg := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{GracePeriodSeconds: &zero, PropagationPolicy: &bg}
	_ = env.kube.AppsV1().StatefulSets(ns).DeleteCollection(ctx, del, metav1.ListOptions{})
	_ = env.kube.CoreV1().Pods(ns).DeleteCollection(ctx, del, metav1.ListOptions{})
	_ = env.snap.SnapshotV1().VolumeSnapshots(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_ = env.kube.CoreV1().PersistentVolumeClaims(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	for name, handle := range pvs {
		expectVolumeGone(t, name, handle)
	}
	_ = env.kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
}

// boundVolumes maps the names of the PVs bound to ns's claims to their volume handles.
func boundVolumes(t *testing.T, ns string) map[string]string {
	out := map[string]string{}
	list, err := env.kube.CoreV1().PersistentVolumes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Errorf("list PVs: %v", err)
		return out
	}
	for _, pv := range list.Items {
		if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == ns && pv.Spec.CSI != nil {
			out[pv.Name] = pv.Spec.CSI.VolumeHandle
		}
	}
	return out
}

// expectVolumeGone waits until the PV is deleted and then checks the machine:
// no backing file in the pool, no mount of the volume under the kubelet's
// directory, no loop device over its backing file.
func expectVolumeGone(t *testing.T, pvName, handle string) {
	t.Helper()
	waitFor(t, "PV "+pvName+" deleted", shortWait, func(ctx context.Context) (bool, error) {
		_, err := env.kube.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	backing := poolDir + "/" + handle + ".img"
	if _, err := os.Stat(backing); err == nil {
		t.Errorf("backing file %s of deleted PV %s still exists", backing, pvName)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, kubeletDir) && (strings.Contains(line, pvName) || strings.Contains(line, handle)) {
			t.Errorf("mount of deleted PV %s remains: %s", pvName, line)
		}
	}
	if loops := loopDevicesOver(t, backing); len(loops) > 0 {
		t.Errorf("loop devices over deleted PV %s's backing file remain: %v", pvName, loops)
	}
}

// loopBacking is a bound loop device and its file as sysfs names it, a
// deleted file's " (deleted)" cut. sysfs names the file by the path it had
// where it was bound: the node plugin binds it in its container, whose mounts
// may be gone by now, and then the path is relative to the vanished pool
// mount ("/vol-x.img").
type loopBacking struct{ dev, file string }

// boundLoopDevices reads every bound loop device from sysfs (no losetup needed).
func boundLoopDevices(t *testing.T) []loopBacking {
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		t.Fatal(err)
	}
	var out []loopBacking
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		b, err := os.ReadFile("/sys/block/" + e.Name() + "/loop/backing_file")
		if err != nil {
			continue // not attached
		}
		out = append(out, loopBacking{"/dev/" + e.Name(), strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")})
	}
	return out
}

// inVanishedPool: a volume file named relative to a pool mount that is gone.
func inVanishedPool(file string) bool {
	return filepath.Dir(file) == "/" && strings.HasPrefix(filepath.Base(file), pool.VolumePrefix)
}

// loopDevicesOver lists loop devices whose backing file is file; within the
// pool the file's name alone is compared (volume files have unique names),
// since the path may be a vanished mount's.
func loopDevicesOver(t *testing.T, file string) []string {
	var out []string
	for _, b := range boundLoopDevices(t) {
		if b.file == file || (strings.HasPrefix(file, poolDir+"/") && filepath.Base(b.file) == filepath.Base(file)) {
			out = append(out, b.dev+" -> "+b.file)
		}
	}
	return out
}

// warningsLater is a waitFor description suffix; waitFor replaces it by the
// namespace's Warning events when it fails, which name the cause
// (ProvisioningFailed, FailedMount, VolumeResizeFailed...).
func warningsLater(ns string) string { return warningMarker + ns }

const warningMarker = "\x00warnings:"

func warnings(ns string) string {
	list, err := env.kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "type=Warning"})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range list.Items {
		fmt.Fprintf(&b, "\n  %s %s/%s: %s (x%d)", e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message, e.Count)
	}
	if b.Len() == 0 {
		return "\n  (no Warning events in " + ns + ")"
	}
	return b.String()
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := wait.PollUntilContextCancel(ctx, poll, true, cond)
	what, ns, withWarnings := strings.Cut(what, warningMarker)
	if err != nil {
		extra := ""
		if withWarnings {
			extra = "; Warning events:" + warnings(ns)
		}
		t.Fatalf("waiting %s for %s: %v%s", time.Since(start).Round(time.Second), what, err, extra)
	}
	t.Logf("%s after %.1fs", what, time.Since(start).Seconds())
}

type claimOpts struct {
	size       string
	class      string // "" = the default StorageClass from manifests/
	block      bool
	dataSource *v1.TypedObjectReference
}

func createClaim(t *testing.T, ns, name string, o claimOpts) *v1.PersistentVolumeClaim {
	t.Helper()
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes:   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources:     v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse(o.size)}},
			DataSourceRef: o.dataSource,
		},
	}
	if o.class != "" {
		pvc.Spec.StorageClassName = &o.class
	}
	if o.block {
		mode := v1.PersistentVolumeBlock
		pvc.Spec.VolumeMode = &mode
	}
	out, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Create(context.Background(), pvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create PVC %s: %v", name, err)
	}
	return out
}

// podWithClaim returns a busybox Pod running script with the claim at /data
// (filesystem) or as the device /dev/xvda (block).
func podWithClaim(ns, name, claim string, block bool, restart v1.RestartPolicy, script string) *v1.Pod {
	zero := int64(0)
	c := v1.Container{
		Name: "app", Image: busyboxImage, ImagePullPolicy: v1.PullIfNotPresent,
		Command: []string{"sh", "-c", script},
	}
	if block {
		c.VolumeDevices = []v1.VolumeDevice{{Name: "data", DevicePath: "/dev/xvda"}}
	} else {
		c.VolumeMounts = []v1.VolumeMount{{Name: "data", MountPath: "/data"}}
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.PodSpec{
			RestartPolicy: restart,
			// The cluster runs no DNS server; the workloads need none.
			DNSPolicy:                     v1.DNSDefault,
			TerminationGracePeriodSeconds: &zero,
			Containers:                    []v1.Container{c},
			Volumes: []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{
				PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
		},
	}
}

// runToCompletion runs a pod that must exit 0 and returns its output.
func runToCompletion(t *testing.T, pod *v1.Pod) string {
	t.Helper()
	ctx := context.Background()
	if _, err := env.kube.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	waitFor(t, "pod "+pod.Name+" completed"+warningsLater(pod.Namespace), shortWait, func(ctx context.Context) (bool, error) {
		p, err := env.kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		switch p.Status.Phase {
		case v1.PodSucceeded:
			return true, nil
		case v1.PodFailed:
			return false, fmt.Errorf("pod %s failed: %s", pod.Name, podLogs(t, pod.Namespace, pod.Name))
		}
		return false, nil
	})
	return podLogs(t, pod.Namespace, pod.Name)
}

func startPod(t *testing.T, pod *v1.Pod) {
	t.Helper()
	ctx := context.Background()
	if _, err := env.kube.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	waitFor(t, "pod "+pod.Name+" running"+warningsLater(pod.Namespace), shortWait, func(ctx context.Context) (bool, error) {
		p, err := env.kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase == v1.PodFailed || p.Status.Phase == v1.PodSucceeded {
			return false, fmt.Errorf("pod %s ended (%s): %s", pod.Name, p.Status.Phase, podLogs(t, pod.Namespace, pod.Name))
		}
		return p.Status.Phase == v1.PodRunning, nil
	})
}

func deletePod(t *testing.T, ns, name string) {
	t.Helper()
	zero := int64(0)
	if err := env.kube.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("delete pod %s: %v", name, err)
	}
	waitFor(t, "pod "+name+" gone", shortWait, func(ctx context.Context) (bool, error) {
		_, err := env.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// waitDetached waits until kube-controller-manager has detached the PV from
// every node: it deletes the VolumeAttachment only after the kubelet reported
// the volume unmounted and unstaged, so after this no node uses the volume.
func waitDetached(t *testing.T, pvName string) {
	t.Helper()
	waitFor(t, "PV "+pvName+" detached (no VolumeAttachment)", shortWait, func(ctx context.Context) (bool, error) {
		vas, err := env.kube.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, va := range vas.Items {
			if n := va.Spec.Source.PersistentVolumeName; n != nil && *n == pvName {
				return false, nil
			}
		}
		return true, nil
	})
}

func podLogs(t *testing.T, ns, name string) string {
	t.Helper()
	rc, err := env.kube.CoreV1().Pods(ns).GetLogs(name, &v1.PodLogOptions{}).Stream(context.Background())
	if err != nil {
		return fmt.Sprintf("(no logs: %v)", err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

func boundPV(t *testing.T, ns, claim string) *v1.PersistentVolume {
	t.Helper()
	ctx := context.Background()
	var pvName string
	waitFor(t, "PVC "+claim+" bound", shortWait, func(ctx context.Context) (bool, error) {
		pvc, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pvName = pvc.Spec.VolumeName
		return pvc.Status.Phase == v1.ClaimBound, nil
	})
	pv, err := env.kube.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get PV %s: %v", pvName, err)
	}
	return pv
}

// token returns a value unique to this run, so read-back checks cannot pass
// on stale data.
func token(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
}
