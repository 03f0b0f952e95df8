package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// renderManifests runs `kubectl kustomize manifests/` (what `kubectl apply -k`
// applies) and decodes every object.
func renderManifests(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	kubectl := filepath.Join(os.Getenv("HOME"), ".cache/csi-hub/k8s-v1.34.4/bin/kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		if kubectl, err = exec.LookPath("kubectl"); err != nil {
			t.Fatalf("no kubectl: run hack/ensure-k8s.sh (make test-deps)")
		}
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(repoRoot(), "manifests")).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kubectl kustomize manifests/: %v: %s", err, ee.Stderr)
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
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"CSIDriver", "Deployment", "DaemonSet", "StorageClass", "VolumeSnapshotClass", "VolumeAttributesClass"} {
		if kinds[k] == 0 {
			t.Errorf("manifests/ has no %s", k)
		}
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
