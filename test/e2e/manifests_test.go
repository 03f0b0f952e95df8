package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/csi-hub/csi-hub/internal/checkout"
	"github.com/csi-hub/csi-hub/internal/testutil"
)

// renderManifests runs `kubectl kustomize manifests/<variant>` (what
// `kubectl apply -k` applies) and decodes every object.
func renderManifests(t *testing.T, variant ...string) []*unstructured.Unstructured {
	t.Helper()
	dir := filepath.Join(append([]string{checkout.Root(), "manifests"}, variant...)...)
	out, err := exec.Command(kubectlPath(t), "kustomize", dir).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kubectl kustomize %s: %v: %s", dir, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("decode: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

// kubectlPath: the kubectl hack/ensure-k8s.sh built, else one on PATH.
func kubectlPath(t *testing.T) string {
	t.Helper()
	kubectl := filepath.Join(os.Getenv("HOME"), ".cache/csi-hub/k8s-v1.34.4/bin/kubectl")
	if c := os.Getenv("CSI_HUB_CACHE"); c != "" {
		kubectl = filepath.Join(c, "k8s-v1.34.4/bin/kubectl")
	}
	if _, err := os.Stat(kubectl); err != nil {
		if kubectl, err = exec.LookPath("kubectl"); err != nil {
			t.Fatalf("no kubectl: run hack/ensure-k8s.sh (make test-deps)")
		}
	}
	return kubectl
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

// RBAC is least privilege: no wildcard anywhere, and the node ServiceAccount
// has no binding at all (and no token mounted).
func TestRBACLeastPrivilege(t *testing.T) {
	objs := renderManifests(t)
	rules := 0
	for _, u := range objs {
		switch u.GetKind() {
		case "ClusterRole", "Role":
			r := convert[rbacv1.ClusterRole](t, u)
			if r.AggregationRule != nil {
				t.Errorf("%s %s aggregates other roles", u.GetKind(), u.GetName())
			}
			for _, rule := range r.Rules {
				rules++
				for _, field := range [][]string{rule.Verbs, rule.Resources, rule.APIGroups, rule.ResourceNames, rule.NonResourceURLs} {
					for _, v := range field {
						if strings.Contains(v, "*") {
							t.Errorf("%s %s has a wildcard %q in %+v", u.GetKind(), u.GetName(), v, rule)
						}
					}
				}
				for _, verb := range rule.Verbs {
					if verb == "escalate" || verb == "bind" || verb == "impersonate" {
						t.Errorf("%s %s grants %q", u.GetKind(), u.GetName(), verb)
					}
				}
			}
		case "ClusterRoleBinding", "RoleBinding":
			b := convert[rbacv1.ClusterRoleBinding](t, u)
			for _, s := range b.Subjects {
				if s.Kind == "ServiceAccount" && s.Name == "csi-hub-node" {
					t.Errorf("%s %s binds the node ServiceAccount; the node side needs no API access", u.GetKind(), u.GetName())
				}
				if s.Kind != "ServiceAccount" || s.Name != "csi-hub-controller" {
					t.Errorf("%s %s binds unexpected subject %+v", u.GetKind(), u.GetName(), s)
				}
			}
		case "ServiceAccount":
			if u.GetName() == "csi-hub-node" {
				sa := convert[v1.ServiceAccount](t, u)
				if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
					t.Errorf("ServiceAccount csi-hub-node mounts a token; it needs none")
				}
			}
		}
	}
	if rules == 0 {
		t.Fatal("no RBAC rules found in manifests/")
	}
}

// The workloads have the shape the issue asks for.
func TestManifestsShape(t *testing.T) {
	kinds := map[string]int{}
	for _, u := range renderManifests(t) {
		kinds[u.GetKind()]++
		switch u.GetKind() {
		case "Deployment":
			d := convert[appsv1.Deployment](t, u)
			spec := d.Spec.Template.Spec
			if len(spec.Containers) != 2 || spec.ServiceAccountName != "csi-hub-controller" {
				t.Errorf("controller Deployment: %d containers, ServiceAccount %q", len(spec.Containers), spec.ServiceAccountName)
			}
			hub := findContainer(t, spec.Containers, "csi-hub")
			if !hasArg(hub.Args, "--leader-election") {
				t.Errorf("controller csi-hub container runs without --leader-election: %v", hub.Args)
			}
			checkNodeNameEnv(t, "controller plugin", findContainer(t, spec.Containers, "plugin"))
			checkDriverLiveness(t, "controller", spec.Containers)
		case "DaemonSet":
			d := convert[appsv1.DaemonSet](t, u)
			spec := d.Spec.Template.Spec
			if len(spec.Containers) != 2 {
				t.Errorf("node DaemonSet: %d containers, want 2", len(spec.Containers))
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Errorf("node DaemonSet mounts a ServiceAccount token")
			}
			plugin := findContainer(t, spec.Containers, "plugin")
			if plugin.SecurityContext == nil || plugin.SecurityContext.Privileged == nil || !*plugin.SecurityContext.Privileged {
				t.Errorf("node plugin is not privileged")
			}
			bidi := false
			for _, m := range plugin.VolumeMounts {
				if m.MountPath == "/var/lib/kubelet" && m.MountPropagation != nil && *m.MountPropagation == v1.MountPropagationBidirectional {
					bidi = true
				}
			}
			if !bidi {
				t.Errorf("node plugin lacks a Bidirectional mount of /var/lib/kubelet")
			}
			checkNodeNameEnv(t, "node plugin", plugin)
			checkDriverLiveness(t, "node", spec.Containers)
			if p := findContainer(t, spec.Containers, "csi-hub").LivenessProbe; p == nil || p.Exec == nil ||
				!slices.Contains(p.Exec.Command, "--mode=kubelet-registration-probe") {
				t.Errorf("node csi-hub container has no kubelet-registration-probe exec probe: %+v", p)
			}
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"CSIDriver", "Deployment", "DaemonSet", "StorageClass", "VolumeSnapshotClass", "VolumeAttributesClass"} {
		if kinds[k] == 0 {
			t.Errorf("manifests/ has no %s", k)
		}
	}
}

// checkDriverLiveness: as upstream deployments, the liveness probe of the
// driver's Probe sits on the plugin container (a hung driver is what gets
// restarted), aimed at the port where csi-hub serves /healthz (--health-port,
// 9808 unless given).
func checkDriverLiveness(t *testing.T, what string, cs []v1.Container) {
	t.Helper()
	plugin, hub := findContainer(t, cs, "plugin"), findContainer(t, cs, "csi-hub")
	p := plugin.LivenessProbe
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("%s plugin container has no /healthz liveness probe: %+v", what, p)
		return
	}
	port := p.HTTPGet.Port.IntValue()
	if port == 0 {
		for _, cp := range plugin.Ports {
			if cp.Name == p.HTTPGet.Port.String() {
				port = int(cp.ContainerPort)
			}
		}
	}
	healthPort := "9808"
	for _, a := range hub.Args {
		if v, ok := strings.CutPrefix(a, "--health-port="); ok {
			healthPort = v
		}
	}
	if strconv.Itoa(port) != healthPort {
		t.Errorf("%s plugin's liveness probe aims at port %d, csi-hub serves /healthz on %s", what, port, healthPort)
	}
}

func findContainer(t *testing.T, cs []v1.Container, name string) *v1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

func hasArg(args []string, want string) bool {
	for _, a := range args {
		if a == want || strings.HasPrefix(a, want+"=") {
			return a == want || strings.HasSuffix(a, "=true")
		}
	}
	return false
}

// checkNodeNameEnv: the node ID comes from the Node's name (downward API), not the pod's hostname.
func checkNodeNameEnv(t *testing.T, what string, c *v1.Container) {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			if hasArg(c.Args, "--node-id=$(NODE_NAME)") || strings.Contains(strings.Join(c.Args, " "), "--node-id=$(NODE_NAME)") {
				return
			}
		}
	}
	t.Errorf("%s does not take --node-id from spec.nodeName: env %+v args %v", what, c.Env, c.Args)
}

// manifests/nvme/ is the loop deployment turned into NVMe/TCP: the controller
// pinned to the storage host with configfs, on the host network (the kernel
// opens the nvmet listener there); nodes on the host network with /etc/nvme
// and /sys, no shared pool, the host NQN as node ID; one zone on both sides;
// and every plugin flag is one the plugin binary knows.
func TestNVMeVariant(t *testing.T) {
	known := pluginFlags(t)
	var zones []string
	for _, u := range renderManifests(t, "nvme") {
		var spec v1.PodSpec
		switch u.GetKind() {
		case "Deployment":
			spec = convert[appsv1.Deployment](t, u).Spec.Template.Spec
			if spec.NodeSelector["block.csi-hub.io/storage-host"] != "true" {
				t.Errorf("controller not pinned to the storage host: nodeSelector %v", spec.NodeSelector)
			}
			plugin := findContainer(t, spec.Containers, "plugin")
			if !mountsAt(plugin, "/sys/kernel/config") || !mountsAt(plugin, "/var/lib/csi-hub/pool") {
				t.Errorf("controller plugin lacks configfs or the pool: %+v", plugin.VolumeMounts)
			}
			if !argSet(plugin.Args, "--nvme-listen-address") || !argSet(plugin.Args, "--nvme-advertise-address") {
				t.Errorf("controller plugin has no nvme listen/advertise address: %v", plugin.Args)
			}
		case "DaemonSet":
			spec = convert[appsv1.DaemonSet](t, u).Spec.Template.Spec
			plugin := findContainer(t, spec.Containers, "plugin")
			for _, p := range []string{"/etc/nvme", "/sys", "/dev", "/var/lib/kubelet"} {
				if !mountsAt(plugin, p) {
					t.Errorf("node plugin does not mount %s", p)
				}
			}
			if mountsAt(plugin, "/var/lib/csi-hub/pool") {
				t.Errorf("node plugin still mounts the pool: nodes reach volumes over TCP")
			}
			if argSet(plugin.Args, "--node-id") {
				t.Errorf("node plugin sets --node-id; with nvme the node ID is the host NQN: %v", plugin.Args)
			}
		default:
			continue
		}
		if !spec.HostNetwork {
			t.Errorf("%s %s is not on the host network", u.GetKind(), u.GetName())
		}
		// On the host network the storage host runs both pods: their health
		// ports must differ, and each plugin's probe must aim at its own pod's.
		checkDriverLiveness(t, u.GetKind(), spec.Containers)
		plugin := findContainer(t, spec.Containers, "plugin")
		if plugin.SecurityContext == nil || plugin.SecurityContext.Privileged == nil || !*plugin.SecurityContext.Privileged {
			t.Errorf("%s plugin is not privileged", u.GetKind())
		}
		if !slices.Contains(plugin.Args, "--transport=nvme") {
			t.Errorf("%s plugin args %v lack --transport=nvme", u.GetKind(), plugin.Args)
		}
		for _, a := range plugin.Args {
			name, value, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if known != nil && !known[name] {
				t.Errorf("%s plugin flag %q is not a csi-hub-plugin flag", u.GetKind(), a)
			}
			if name == "nvme-zone" {
				zones = append(zones, value)
			}
		}
	}
	if len(zones) != 2 || zones[0] == "" || zones[0] != zones[1] {
		t.Errorf("--nvme-zone on controller and nodes: %q, want one zone on both", zones)
	}
}

// pluginFlags builds cmd/csi-hub-plugin and reads its flag names from -h.
// In unit mode it returns nil (the flags are not checked): building the
// binary is most of the test's time, and make test checks them.
func pluginFlags(t *testing.T) map[string]bool {
	t.Helper()
	if testutil.UnitMode() {
		t.Log("unit mode: the plugin flags in the manifests are not checked (that needs go build of cmd/csi-hub-plugin); make test checks them")
		return nil
	}
	bin := filepath.Join(t.TempDir(), "csi-hub-plugin")
	build := exec.Command("go", "build", "-o", bin, "./cmd/csi-hub-plugin")
	build.Dir = checkout.Root()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, _ := exec.Command(bin, "-h").CombinedOutput() // -h exits 2 by design
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-_]+)`).FindAllStringSubmatch(string(out), -1) {
		known[m[1]] = true
	}
	if !known["transport"] || !known["endpoint"] {
		t.Fatalf("could not read the plugin's flags from -h:\n%s", out)
	}
	return known
}

func mountsAt(c *v1.Container, path string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m v1.VolumeMount) bool { return m.MountPath == path })
}

func argSet(args []string, flag string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == flag || strings.HasPrefix(a, flag+"=") })
}
