package chart

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/csi-hub/csi-hub/internal/checkout"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the chart")

// valueSets are the configurations the chart supports; each has a golden render.
var valueSets = []string{"default", "nvme", "external", "monitoring", "node-local"}

func valuesFile(set string) string {
	return filepath.Join(checkout.Root(), "test", "chart", "testdata", set+".values.yaml")
}

func template(t *testing.T, args ...string) string {
	t.Helper()
	base := []string{"template", "csi-hub", chartDir(), "--namespace", "csi-hub"}
	return run(t, helm(t), append(base, args...)...)
}

func TestLint(t *testing.T) {
	t.Parallel()
	for _, set := range valueSets {
		t.Run(set, func(t *testing.T) {
			t.Parallel()
			out := run(t, helm(t), "lint", "--strict", chartDir(), "-f", valuesFile(set))
			if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
				t.Fatalf("helm lint: %s", out)
			}
		})
	}
}

// Values the chart cannot honour fail the install with a message naming the value.
func TestBadValuesRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "transport=iscsi"}, `transport must be loop or nvme, not "iscsi"`},
		{[]string{"--set", "driver.external=true", "--set", "driver.controllerAffinity.app=ebs"}, "driver.externalSockets.controllerDir"},
		{[]string{"--set", "driver.external=true", "--set", "driver.externalSockets.controllerDir=/run/x"}, "driver.controllerAffinity"},
	} {
		h := helm(t)
		_, err := runErr(h, append([]string{"template", "csi-hub", chartDir(), "-n", "csi-hub"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("helm template %v: want an error naming %q, got %v", c.args, c.want, err)
		}
	}
}

func TestTemplateSnapshots(t *testing.T) {
	t.Parallel()
	for _, set := range valueSets {
		t.Run(set, func(t *testing.T) {
			t.Parallel()
			got := template(t, "-f", valuesFile(set))
			golden := filepath.Join(checkout.Root(), "test", "chart", "testdata", set+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./test/chart -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("helm template -f %s differs from %s (review, then go test ./test/chart -update):\n%s",
					filepath.Base(valuesFile(set)), filepath.Base(golden), firstDiff(string(want), got))
			}
		})
	}
}

// The chart with its defaults installs what `kubectl apply -k manifests/` does,
// transport=nvme what manifests/nvme/ does and nodeDeployment.enabled (the
// companion driver node-local) what manifests/node-local/ does (apart from the
// Namespace, which Helm leaves to --create-namespace).
func TestChartMatchesManifests(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ set, manifests string }{{"default", ""}, {"nvme", "nvme"}, {"node-local", "node-local"}} {
		t.Run(c.set, func(t *testing.T) {
			t.Parallel()
			chart := byKey(t, decode(t, template(t, "-f", valuesFile(c.set))))
			kust := byKey(t, decode(t, run(t, kubectl(t), "kustomize", filepath.Join(checkout.Root(), "manifests", c.manifests))))
			delete(kust, "Namespace//csi-hub")
			for k := range kust {
				if _, ok := chart[k]; !ok {
					t.Errorf("the chart lacks %s, which manifests/%s has", k, c.manifests)
				}
			}
			for k, obj := range chart {
				want, ok := kust[k]
				if !ok {
					t.Errorf("the chart renders %s, which manifests/%s lacks", k, c.manifests)
					continue
				}
				if !reflect.DeepEqual(normalize(obj.Object), normalize(want.Object)) {
					g, _ := yaml.Marshal(normalize(obj.Object))
					w, _ := yaml.Marshal(normalize(want.Object))
					t.Errorf("%s differs from manifests/%s:\n%s", k, c.manifests, firstDiff(string(w), string(g)))
				}
			}
		})
	}
}

func decode(t *testing.T, s string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(s), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decode: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

func byKey(t *testing.T, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		k := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
		if _, dup := m[k]; dup {
			t.Fatalf("%s rendered twice", k)
		}
		m[k] = o
	}
	return m
}

// normalize orders lists of named items (containers, volumes, env, ports) by
// name: kustomize's strategic merge appends patched items, the chart writes them
// in place, and the order carries no meaning to the API server there.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		named := len(out) > 0
		for _, e := range out {
			m, ok := e.(map[string]any)
			_, has := m["name"]
			named = named && ok && has && len(m) > 1
		}
		if named {
			sort.SliceStable(out, func(i, j int) bool {
				return out[i].(map[string]any)["name"].(string) < out[j].(map[string]any)["name"].(string)
			})
		}
		return out
	default:
		return v
	}
}

// firstDiff shows the first differing line with a little context.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			var b bytes.Buffer
			for j := max(0, i-3); j < i; j++ {
				b.WriteString("  " + w[j] + "\n")
			}
			b.WriteString("- " + wl + "\n+ " + gl + "\n")
			return b.String()
		}
	}
	return "(no difference)"
}
