package registrar

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// kubeletClient dials the registration socket the way the kubelet's plugin watcher does.
func kubeletClient(t *testing.T, path string) registerapi.RegistrationClient {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return registerapi.NewRegistrationClient(cc)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRegistrationProtocol(t *testing.T) {
	dir := t.TempDir()
	failures := make(chan error, 1)
	cfg := Config{
		DriverName:              "block.csi-hub.io",
		KubeletRegistrationPath: "/var/lib/kubelet/plugins/block.csi-hub.io/csi.sock",
		RegistrationDir:         dir,
		CheckInterval:           50 * time.Millisecond,
		OnRegistrationFailure:   func(err error) { failures <- err },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()

	sock := filepath.Join(dir, "block.csi-hub.io-reg.sock")
	waitFor(t, "registration socket", func() bool { return inode(sock) != 0 })
	if err := cfg.Healthy(); err != nil {
		t.Fatalf("Healthy with socket present: %v", err)
	}

	kubelet := kubeletClient(t, sock)
	info, err := kubelet.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if info.Type != "CSIPlugin" || info.Name != cfg.DriverName || info.Endpoint != cfg.KubeletRegistrationPath ||
		len(info.SupportedVersions) != 1 || info.SupportedVersions[0] != "1.0.0" {
		t.Fatalf("GetInfo = %+v", info)
	}

	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatalf("NotifyRegistrationStatus(ok): %v", err)
	}
	select {
	case err := <-failures:
		t.Fatalf("success reported as failure: %v", err)
	default:
	}
	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: false, Error: "version mismatch"}); err != nil {
		t.Fatalf("NotifyRegistrationStatus(failed): %v", err)
	}
	select {
	case err := <-failures:
		if !strings.Contains(err.Error(), "version mismatch") {
			t.Fatalf("failure error %q does not carry the kubelet's reason", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a failed registration did not trigger OnRegistrationFailure")
	}

	// The kubelet's directory is wiped: the socket must come back.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if cfg.Healthy() == nil {
		t.Fatal("Healthy reports ok with the socket gone")
	}
	// inode numbers may be reused, so "present again" is the test.
	waitFor(t, "socket recreated", func() bool { return inode(sock) != 0 })
	if _, err := kubeletClient(t, sock).GetInfo(ctx, &registerapi.InfoRequest{}); err != nil {
		t.Fatalf("GetInfo on the recreated socket: %v", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after shutdown: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	base := Config{DriverName: "d", KubeletRegistrationPath: "/x/csi.sock", RegistrationDir: t.TempDir()}
	cases := map[string]func(c *Config){
		"driver name is empty":      func(c *Config) { c.DriverName = "" },
		"kubelet-registration-path": func(c *Config) { c.KubeletRegistrationPath = "" },
		"must be absolute":          func(c *Config) { c.KubeletRegistrationPath = "csi.sock" },
		"plugin-registration-path":  func(c *Config) { c.RegistrationDir = "" },
	}
	for want, mutate := range cases {
		c := base
		mutate(&c)
		err := Run(context.Background(), c)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Run with bad config: error %v, want it to mention %q", err, want)
		}
	}
}
