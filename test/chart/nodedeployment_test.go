package chart

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/csi-hub/csi-hub/internal/checkout"
)

// nodeDeploymentKinds are the objects of --node-deployment: the DaemonSet and
// its RBAC.
var nodeDeploymentKeys = []string{
	"ServiceAccount/csi-hub/csi-hub-node-deployment",
	"ClusterRoleBinding//csi-hub-node-deployment",
	"ClusterRole//csi-hub-node-deployment",
	"ClusterRoleBinding//csi-hub-node-deployment-extra",
	"Role/csi-hub/csi-hub-node-deployment",
	"RoleBinding/csi-hub/csi-hub-node-deployment",
	"DaemonSet/csi-hub/csi-hub-node-deployment",
}

// nodeDeploymentComponent renders manifests/components/node-deployment as an
// operator's kustomization would.
func nodeDeploymentComponent(t *testing.T) map[string]*unstructured.Unstructured {
	t.Helper()
	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, filepath.Join(checkout.Root(), "manifests", "components", "node-deployment"))
	if err != nil {
		t.Fatal(err)
	}
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\ncomponents:\n- " + rel + "\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	return byKey(t, decode(t, run(t, kubectl(t), "kustomize", overlay)))
}

func rulesOf(t *testing.T, obj *unstructured.Unstructured) []string {
	t.Helper()
	rules, _, err := unstructured.NestedSlice(obj.Object, "rules")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rules {
		m := r.(map[string]any)
		for _, res := range m["resources"].([]any) {
			for _, v := range m["verbs"].([]any) {
				out = append(out, res.(string)+":"+v.(string))
			}
		}
	}
	return out
}

// The node-deployment DaemonSet and RBAC, from the kustomize component and
// from the chart (nodeDeployment.enabled): csi-hub --mode=controller
// --node-deployment on every node with NODE_NAME from spec.nodeName, no leader
// election, the driver's node socket; the ServiceAccount bound to csi-hub's
// ClusterRole (nodes and csinodes get/list/watch) plus PVC update (the
// Immediate competition) and CSIStorageCapacities, Pod and DaemonSet get
// (--enable-capacity with the DaemonSet as owner), as upstream's RBAC. The
// chart renders exactly the component's objects.
func TestNodeDeployment(t *testing.T) {
	t.Parallel()
	comp := nodeDeploymentComponent(t)
	chart := byKey(t, decode(t, template(t, "-f", valuesFile("node-deployment"))))
	for _, k := range nodeDeploymentKeys {
		c, h := comp[k], chart[k]
		if c == nil || h == nil {
			t.Errorf("%s: in the component %v, in the chart %v", k, c != nil, h != nil)
			continue
		}
		if !reflect.DeepEqual(normalize(c.Object), normalize(h.Object)) {
			g, _ := yaml.Marshal(normalize(h.Object))
			w, _ := yaml.Marshal(normalize(c.Object))
			t.Errorf("%s differs between the component and the chart:\n%s", k, firstDiff(string(w), string(g)))
		}
	}
	for name, objs := range map[string]map[string]*unstructured.Unstructured{"component": comp, "chart": chart} {
		ds := objs["DaemonSet/csi-hub/csi-hub-node-deployment"]
		if ds == nil {
			continue
		}
		hub := containers(t, ds)["csi-hub"]
		var args []string
		for _, a := range hub["args"].([]any) {
			args = append(args, a.(string))
		}
		for _, want := range []string{"--mode=controller", "--node-deployment", "--enable-capacity"} {
			if !slices.Contains(args, want) {
				t.Errorf("%s: csi-hub args %v lack %s", name, args, want)
			}
		}
		if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--leader-election") }) {
			t.Errorf("%s: csi-hub args %v: --leader-election is refused with --node-deployment", name, args)
		}
		env := map[string]string{}
		for _, e := range hub["env"].([]any) {
			m := e.(map[string]any)
			path, _, _ := unstructured.NestedString(m, "valueFrom", "fieldRef", "fieldPath")
			env[m["name"].(string)] = path
		}
		if env["NODE_NAME"] != "spec.nodeName" || env["NAMESPACE"] != "metadata.namespace" || env["POD_NAME"] != "metadata.name" {
			t.Errorf("%s: csi-hub env %v, want NODE_NAME, NAMESPACE and POD_NAME from the pod", name, env)
		}
		if sa, _, _ := unstructured.NestedString(ds.Object, "spec", "template", "spec", "serviceAccountName"); sa != "csi-hub-node-deployment" {
			t.Errorf("%s: ServiceAccount %q", name, sa)
		}
		if cr := objs["ClusterRole//csi-hub-node-deployment"]; cr == nil || !slices.Contains(rulesOf(t, cr), "persistentvolumeclaims:update") {
			t.Errorf("%s: no ClusterRole granting persistentvolumeclaims update", name)
		}
		if r := objs["Role/csi-hub/csi-hub-node-deployment"]; r == nil || !slices.Contains(rulesOf(t, r), "csistoragecapacities:create") ||
			!slices.Contains(rulesOf(t, r), "pods:get") || !slices.Contains(rulesOf(t, r), "daemonsets:get") {
			t.Errorf("%s: no Role granting csistoragecapacities, pods get and daemonsets get", name)
		}
	}
	// The central csi-hub's ClusterRole, bound to the node deployment too, has the node reads.
	if cr := comp["ClusterRole//csi-hub-controller"]; cr == nil || !slices.Contains(rulesOf(t, cr), "nodes:get") || !slices.Contains(rulesOf(t, cr), "csinodes:get") {
		t.Errorf("the component lacks csi-hub-controller's ClusterRole with nodes and csinodes get")
	}
	if args := containers(t, chart["Deployment/csi-hub/csi-hub-controller"])["csi-hub"]["args"].([]any); !slices.Contains(args, any("--controllers=attacher,resizer")) {
		t.Errorf("central csi-hub args %v, want --controllers=attacher,resizer", args)
	}
	// Off by default.
	for k := range byKey(t, decode(t, template(t, "-f", valuesFile("default")))) {
		if slices.Contains(nodeDeploymentKeys, k) {
			t.Errorf("the default values render %s", k)
		}
	}

	// Values that cannot work are refused by name.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "nodeDeployment.enabled=true", "--set", "transport=nvme"}, "nodeDeployment.enabled=true with the companion driver needs transport=loop"},
		{[]string{"-f", valuesFile("node-deployment"), "--set", `controller.controllers=provisioner\,attacher`}, "without provisioner and snapshotter"},
		{[]string{"-f", valuesFile("node-deployment"), "--set", "controller.controllers="}, "without provisioner and snapshotter"},
	} {
		_, err := runErr(helm(t), append([]string{"template", "csi-hub", chartDir(), "-n", "csi-hub"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("helm template %v: want an error naming %q, got %v", c.args, c.want, err)
		}
	}
	if out := run(t, helm(t), "lint", "--strict", chartDir(), "-f", valuesFile("node-deployment")); !strings.Contains(out, "0 chart(s) failed") {
		t.Errorf("helm lint: %s", out)
	}
}

// The companion driver node-local (manifests/node-local/, the chart's
// nodeDeployment.enabled without driver.external): the CSIDriver has
// attachRequired: false, every node's plugin serves Controller and Node on its
// own pool with --node-local-pool, csi-hub --node-deployment runs on every
// node dialing that plugin's socket, and no central controller Deployment is
// left to provision or attach. The default keeps attachRequired: true and the
// node-mode plugin without the flag. (TestChartMatchesManifests checks the
// chart renders exactly manifests/node-local/.)
func TestNodeLocalCompanion(t *testing.T) {
	t.Parallel()
	render := map[string]map[string]*unstructured.Unstructured{
		"manifests/node-local": byKey(t, decode(t, run(t, kubectl(t), "kustomize", filepath.Join(checkout.Root(), "manifests", "node-local")))),
		"chart":                byKey(t, decode(t, template(t, "-f", valuesFile("node-local")))),
	}
	for name, objs := range render {
		attach, found, _ := unstructured.NestedBool(objs["CSIDriver//block.csi-hub.io"].Object, "spec", "attachRequired")
		if !found || attach {
			t.Errorf("%s: CSIDriver attachRequired %v (set: %v), want false", name, attach, found)
		}
		plugin := containers(t, objs["DaemonSet/csi-hub/csi-hub-node"])["plugin"]
		var args []string
		for _, a := range plugin["args"].([]any) {
			args = append(args, a.(string))
		}
		for _, want := range []string{"--mode=all", "--node-local-pool", "--pool-dir=/var/lib/csi-hub/pool", "--node-id=$(NODE_NAME)"} {
			if !slices.Contains(args, want) {
				t.Errorf("%s: node plugin args %v lack %s", name, args, want)
			}
		}
		if objs["Deployment/csi-hub/csi-hub-controller"] != nil {
			t.Errorf("%s: the central controller Deployment is rendered; node-local has none", name)
		}
		for _, k := range nodeDeploymentKeys {
			if objs[k] == nil {
				t.Errorf("%s: %s missing", name, k)
			}
		}
		if ds := objs["DaemonSet/csi-hub/csi-hub-node-deployment"]; ds != nil {
			vols, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "volumes")
			if p, _, _ := unstructured.NestedString(vols[0].(map[string]any), "hostPath", "path"); p != "/var/lib/kubelet/plugins/block.csi-hub.io" {
				t.Errorf("%s: csi-hub-node-deployment dials %s, want the node plugin's socket dir", name, p)
			}
		}
	}
	def := byKey(t, decode(t, template(t, "-f", valuesFile("default"))))
	if attach, _, _ := unstructured.NestedBool(def["CSIDriver//block.csi-hub.io"].Object, "spec", "attachRequired"); !attach {
		t.Error("default: CSIDriver attachRequired false, want true")
	}
	if args := containers(t, def["DaemonSet/csi-hub/csi-hub-node"])["plugin"]["args"].([]any); slices.Contains(args, any("--node-local-pool")) || !slices.Contains(args, any("--mode=node")) {
		t.Errorf("default: node plugin args %v, want --mode=node without --node-local-pool", args)
	}
}
