package hub

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"
)

func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "` + server + `"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// As the sidecars: --kubeconfig, else $KUBECONFIG, else in-cluster.
func TestClientConfigSources(t *testing.T) {
	env := writeKubeconfig(t, "https://from-env.invalid:6443")
	flagPath := writeKubeconfig(t, "https://from-flag.invalid:6443")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", env)

	cfg, err := (&Options{}).ClientConfig()
	if err != nil || cfg.Host != "https://from-env.invalid:6443" {
		t.Errorf("KUBECONFIG set, --kubeconfig empty: host %v, err %v; want the KUBECONFIG file's", hostOf(cfg), err)
	}
	cfg, err = (&Options{Kubeconfig: flagPath}).ClientConfig()
	if err != nil || cfg.Host != "https://from-flag.invalid:6443" {
		t.Errorf("--kubeconfig given: host %v, err %v; want the flag's file", hostOf(cfg), err)
	}
	cfg, err = (&Options{Compat: Compat{Master: "https://master.invalid:6443"}}).ClientConfig()
	if err != nil || cfg.Host != "https://master.invalid:6443" {
		t.Errorf("--master with KUBECONFIG: host %v, err %v; want --master", hostOf(cfg), err)
	}
	t.Setenv("KUBECONFIG", "")
	if _, err := (&Options{}).ClientConfig(); !errors.Is(err, rest.ErrNotInCluster) {
		t.Errorf("neither set, not in a pod: error %v, want the in-cluster config's ErrNotInCluster", err)
	}
}

func hostOf(cfg *rest.Config) string {
	if cfg == nil {
		return "<nil>"
	}
	return cfg.Host
}

// --metrics-address is --http-endpoint's deprecated name; both is an error.
func TestMetricsAddress(t *testing.T) {
	o := Options{HTTPEndpoint: ":1", Compat: Compat{MetricsAddress: ":2"}}
	if err := o.Apply(); err == nil {
		t.Error("--metrics-address with --http-endpoint accepted")
	}
}

func TestHealthAddress(t *testing.T) {
	for _, tc := range []struct {
		port, endpoint, want string
	}{
		{"9808", "", "0.0.0.0:9808"},
		{"9808", ":8080", "0.0.0.0:9808"},
		{"9808", ":9808", ""}, // already served with everything else
		{"0", "", ""},
		{"", ":8080", ""}, // options built in code
	} {
		if got := HealthAddress(Options{HTTPEndpoint: tc.endpoint, Compat: Compat{HealthPort: tc.port}}); got != tc.want {
			t.Errorf("--health-port=%q --http-endpoint=%q: %q, want %q", tc.port, tc.endpoint, got, tc.want)
		}
	}
}
