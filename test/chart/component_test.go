package chart

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/csi-hub/csi-hub/internal/checkout"
)

// renderSwapped renders the upstream-shaped deployment of test/swap/testdata/classic
// with manifests/components/replace-sidecars, as an operator's kustomization would.
func renderSwapped(t *testing.T) (classic, swapped map[string]*unstructured.Unstructured) {
	t.Helper()
	k := kubectl(t)
	classicDir := filepath.Join(checkout.Root(), "test", "swap", "testdata", "classic")
	overlay := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(overlay, p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " + rel(classicDir) +
		"\ncomponents:\n- " + rel(filepath.Join(checkout.Root(), "manifests", "components", "replace-sidecars")) + "\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	swapped = byKey(t, decode(t, run(t, k, "kustomize", overlay)))
	classic = byKey(t, decode(t, run(t, k, "kustomize", classicDir)))
	return classic, swapped
}

func containers(t *testing.T, obj *unstructured.Unstructured) map[string]map[string]any {
	t.Helper()
	list, _, err := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, c := range list {
		m := c.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

func names(m map[string]map[string]any) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	return out
}

func TestReplaceSidecarsComponent(t *testing.T) {
	t.Parallel()
	classic, swapped := renderSwapped(t)
	for _, c := range []struct {
		key, sidecar, mode string
	}{
		{"Deployment/blockcsi/blockcsi-controller", "csi-provisioner", "--mode=controller"},
		{"DaemonSet/blockcsi/blockcsi-node", "node-driver-registrar", "--mode=node"},
	} {
		before, after := containers(t, classic[c.key]), containers(t, swapped[c.key])
		if len(after) != 2 || after["blockcsi-plugin"] == nil || after["csi-hub"] == nil {
			t.Errorf("%s: containers after the swap are %v, want exactly blockcsi-plugin and csi-hub", c.key, names(after))
			continue
		}
		if !reflect.DeepEqual(after["blockcsi-plugin"], before["blockcsi-plugin"]) {
			t.Errorf("%s: the driver container changed:\nbefore %v\nafter  %v", c.key, before["blockcsi-plugin"], after["blockcsi-plugin"])
		}
		hub, side := after["csi-hub"], before[c.sidecar]
		if got := hub["command"]; !reflect.DeepEqual(got, []any{"/csi-hub", c.mode}) {
			t.Errorf("%s: csi-hub command %v, want [/csi-hub %s]", c.key, got, c.mode)
		}
		for _, f := range []string{"args", "env", "volumeMounts"} {
			if !reflect.DeepEqual(hub[f], side[f]) {
				t.Errorf("%s: csi-hub %s = %v, want %s's %v", c.key, f, hub[f], c.sidecar, side[f])
			}
		}
	}
	if s, _, _ := unstructured.NestedString(swapped["Deployment/blockcsi/blockcsi-controller"].Object, "spec", "strategy", "type"); s != "Recreate" {
		t.Errorf("controller Deployment strategy %q after the swap, want Recreate", s)
	}
	// The pods' volumes, selectors and service accounts stay as they were.
	for _, key := range []string{"Deployment/blockcsi/blockcsi-controller", "DaemonSet/blockcsi/blockcsi-node"} {
		for _, f := range [][]string{{"spec", "template", "spec", "volumes"}, {"spec", "selector"}, {"spec", "template", "spec", "serviceAccountName"}} {
			b, _, _ := unstructured.NestedFieldNoCopy(classic[key].Object, f...)
			a, _, _ := unstructured.NestedFieldNoCopy(swapped[key].Object, f...)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s %v changed: %v -> %v", key, f, b, a)
			}
		}
	}
	// csi-hub's least-privilege role (the same as manifests/ grants) is bound to the
	// driver's controller ServiceAccount; the sidecars' own roles stay.
	manifests := byKey(t, decode(t, run(t, kubectl(t), "kustomize", filepath.Join(checkout.Root(), "manifests"))))
	role := swapped["ClusterRole//csi-hub-controller"]
	if role == nil {
		t.Fatal("no ClusterRole csi-hub-controller after the swap")
	}
	if !reflect.DeepEqual(role.Object["rules"], manifests["ClusterRole//csi-hub-controller"].Object["rules"]) {
		t.Error("the component's csi-hub-controller ClusterRole differs from manifests/'s")
	}
	wantSubject := []any{map[string]any{"kind": "ServiceAccount", "name": "blockcsi-controller-sa", "namespace": "blockcsi"}}
	for _, key := range []string{"ClusterRoleBinding//csi-hub-controller", "RoleBinding/blockcsi/csi-hub-leader-election"} {
		b := swapped[key]
		if b == nil {
			t.Errorf("no %s after the swap", key)
			continue
		}
		if !reflect.DeepEqual(b.Object["subjects"], wantSubject) {
			t.Errorf("%s subjects %v, want %v", key, b.Object["subjects"], wantSubject)
		}
	}
	if swapped["Role/blockcsi/csi-hub-leader-election"] == nil {
		t.Error("no leader-election Role in the driver's namespace")
	}
	for key := range classic {
		if swapped[key] == nil {
			t.Errorf("the swap dropped %s", key)
		}
	}
}
