package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// The test binary doubles as csi-hub: with this variable set it runs main's
// run() on its arguments, so the node-mode test sees a real process exit.
const runMainEnv = "CSI_HUB_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func healthz(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// TestNodeMode runs csi-hub --mode=node as a process, as the DaemonSet does,
// and plays the kubelet: registration over the socket, /healthz as the
// liveness probe, and a failed registration that must end the process with
// a non-zero exit so that the kubelet restarts the container.
func TestNodeMode(t *testing.T) {
	dir, err := os.MkdirTemp("", "hub-node-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	driver := fakedriver.New(fakedriver.Options{Name: "node-test.csi.example.com"})
	driverSock := filepath.Join(dir, "csi.sock")
	if err := driver.Start(driverSock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(driver.StopNow)

	regDir := filepath.Join(dir, "registry")
	httpAddr := freeAddr(t)
	const hostPath = "/var/lib/kubelet/plugins/node-test.csi.example.com/csi.sock"
	cmd := exec.Command(os.Args[0], "--mode=node", "--csi-address="+driverSock,
		"--kubelet-registration-path="+hostPath, "--plugin-registration-path="+regDir,
		"--http-endpoint="+httpAddr)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})

	regSock := filepath.Join(regDir, "node-test.csi.example.com-reg.sock")
	testutil.Eventually(t, context.Background(), 20*time.Second, "the registration socket", func() (bool, error) {
		_, err := os.Stat(regSock)
		return err == nil, nil
	})
	cc, err := grpc.NewClient("unix://"+regSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	kubelet := registerapi.NewRegistrationClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := kubelet.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	want := fmt.Sprintf("%s %s %s [1.0.0]", registerapi.CSIPlugin, "node-test.csi.example.com", hostPath)
	if got := fmt.Sprintf("%s %s %s %v", info.Type, info.Name, info.Endpoint, info.SupportedVersions); got != want {
		t.Fatalf("GetInfo = %q, want %q (driver name from GetPluginInfo)", got, want)
	}

	// The liveness job: /healthz follows the driver's Probe.
	testutil.Eventually(t, ctx, 10*time.Second, "/healthz ok", func() (bool, error) {
		code, _ := healthz(httpAddr)
		return code == http.StatusOK, nil
	})
	driver.SetReady(false)
	if code, body := healthz(httpAddr); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") {
		t.Errorf("/healthz with the driver not ready = %d %q, want 503 naming it", code, body)
	}
	driver.SetReady(true)
	if code, body := healthz(httpAddr); code != http.StatusOK {
		t.Errorf("/healthz with the driver ready again = %d %q", code, body)
	}

	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatalf("NotifyRegistrationStatus(ok): %v", err)
	}
	select {
	case err := <-exited:
		t.Fatalf("exited after a successful registration: %v\n%s", err, stderr.String())
	case <-time.After(500 * time.Millisecond):
	}

	// A failed registration ends the process with a non-zero exit; the
	// response itself may or may not make it back before the exit.
	kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: false, Error: "plugin version mismatch"})
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("process ended with %v after a failed registration, want a non-zero exit", err)
		}
		if !strings.Contains(stderr.String(), "plugin version mismatch") {
			t.Errorf("the log does not carry the kubelet's reason:\n%s", stderr.String())
		}
		t.Logf("failed registration: exit code %d", exit.ExitCode())
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15s after a failed registration\n%s", stderr.String())
	}
}
