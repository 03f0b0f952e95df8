package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
	t.Parallel() // beside the timeout test: each has its own driver, directory and ports

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
	// /healthz on --health-port, without --http-endpoint, as livenessprobe.
	_, healthPort, _ := net.SplitHostPort(freeAddr(t))
	healthAddr := "127.0.0.1:" + healthPort
	// The host path of the driver socket; the registration status for the
	// probe mode lands beside it, so it stays in the test's directory.
	hostPath := filepath.Join(dir, "host", "node-test.csi.example.com", "csi.sock")
	cmd := exec.Command(os.Args[0], "--mode=node", "--csi-address="+driverSock,
		"--kubelet-registration-path="+hostPath, "--plugin-registration-path="+regDir,
		"--health-port="+healthPort, "--probe-timeout=1s", "--timeout=2s", "--connection-timeout=5s",
		"--logging-format=json", "-v=5", "--max-grpc-log-length=12", "--http-endpoint="+httpAddr)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var stderr, stdout syncBuffer
	cmd.Stderr, cmd.Stdout = &stderr, &stdout
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
	// Created under umask 0077, as node-driver-registrar: only its user may connect.
	if st, err := os.Stat(regSock); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("registration socket mode %v (%v), want no group/other permissions", st.Mode(), err)
	}
	// Until the kubelet reports the registration, the exec probe fails.
	if code := registrationProbe(t, hostPath); code == 0 {
		t.Errorf("--mode=kubelet-registration-probe exited 0 before the kubelet registered the driver")
	}
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
	for _, addr := range []string{healthAddr, httpAddr} {
		if code, body := healthz(addr); code != http.StatusOK {
			t.Errorf("/healthz on %s = %d %q", addr, code, body)
		}
	}
	driver.SetReady(false)
	if code, body := healthz(healthAddr); code != http.StatusInternalServerError || !strings.Contains(body, "not ready") {
		t.Errorf("/healthz with the driver not ready = %d %q, want 500 naming it (as livenessprobe)", code, body)
	}
	driver.SetReady(true)
	if code, body := healthz(healthAddr); code != http.StatusOK {
		t.Errorf("/healthz with the driver ready again = %d %q", code, body)
	}
	// A hung driver fails the probe within --probe-timeout (1s).
	driver.SetDelay("Probe", 20*time.Second)
	start := time.Now()
	code, body := healthz(healthAddr)
	took := time.Since(start)
	driver.SetDelay("Probe", 0)
	if code != http.StatusInternalServerError || took > 4*time.Second {
		t.Errorf("/healthz with a hung driver = %d %q after %v, want 500 within about --probe-timeout=1s", code, body, took)
	}
	t.Logf("hung driver: /healthz answered %d after %v", code, took.Round(time.Millisecond))

	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatalf("NotifyRegistrationStatus(ok): %v", err)
	}
	if code := registrationProbe(t, hostPath); code != 0 {
		t.Errorf("--mode=kubelet-registration-probe exited %d after the kubelet registered the driver, want 0", code)
	}
	// --max-grpc-log-length caps the logged gRPC responses (-v=5), as external-attacher.
	if logs := stderr.String() + stdout.String(); !strings.Contains(logs, "log capped to 12 chars") {
		t.Errorf("--max-grpc-log-length=12: no capped gRPC response in the -v=5 log:\n%.1500s", logs)
	}
	// --logging-format=json, as the sidecars: every line a JSON object.
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line != "" && !json.Valid([]byte(line)) {
			t.Errorf("--logging-format=json wrote a line that is not JSON: %q", line)
			break
		}
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
		if !strings.Contains(stderr.String(), "plugin version mismatch") && !strings.Contains(stdout.String(), "plugin version mismatch") {
			t.Errorf("the log does not carry the kubelet's reason:\n%s", stderr.String())
		}
		t.Logf("failed registration: exit code %d", exit.ExitCode())
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15s after a failed registration\n%s", stderr.String())
	}
}

// registrationProbe runs csi-hub as the DaemonSet's exec probe and returns its exit code.
func registrationProbe(t *testing.T, hostPath string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--mode=kubelet-registration-probe", "--kubelet-registration-path="+hostPath)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		t.Logf("registration probe: exit %d: %s", exit.ExitCode(), strings.TrimSpace(string(out)))
		return exit.ExitCode()
	}
	t.Fatalf("registration probe: %v", err)
	return -1
}

// syncBuffer is a bytes.Buffer safe for the child's output goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
