package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

// hungIdentity is a driver that accepts connections and never answers
// GetPluginInfo.
type hungIdentity struct {
	csi.UnimplementedIdentityServer
	calls chan struct{}
}

func (h *hungIdentity) GetPluginInfo(ctx context.Context, _ *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	select {
	case h.calls <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// Node mode's --timeout is node-driver-registrar's: the GetPluginInfo call
// that reads the driver name gets that long. A driver that accepts the
// connection and hangs makes csi-hub --mode=node exit non-zero after
// --timeout (not before, not much after) with a message naming the call and
// the flag, so the kubelet restarts the container, instead of waiting forever.
func TestNodeModeTimeoutOnHungDriver(t *testing.T) {
	t.Parallel()
	// Two values show the exit follows the flag; they run side by side, each
	// against its own hung driver.
	for _, timeout := range []time.Duration{500 * time.Millisecond, 2 * time.Second} {
		t.Run(fmt.Sprintf("timeout=%v", timeout), func(t *testing.T) {
			t.Parallel()
			dir, sock, hung := startHungDriver(t)
			cmd := exec.Command(os.Args[0], "--mode=node", "--csi-address="+sock,
				"--kubelet-registration-path="+filepath.Join(dir, "host", "csi.sock"),
				"--plugin-registration-path="+filepath.Join(dir, "registry"),
				"--health-port=0", fmt.Sprintf("--timeout=%v", timeout))
			cmd.Env = append(os.Environ(), runMainEnv+"=1")
			var out syncBuffer
			cmd.Stderr, cmd.Stdout = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			var called time.Time
			select {
			case <-hung.calls:
				called = time.Now()
			case err := <-exited:
				t.Fatalf("exited (%v) before calling GetPluginInfo:\n%s", err, out.String())
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("no GetPluginInfo call within 30s:\n%s", out.String())
			}
			var err error
			select {
			case err = <-exited:
			case <-time.After(timeout + 15*time.Second):
				cmd.Process.Kill()
				<-exited
				t.Fatalf("still running %v after GetPluginInfo hung with --timeout=%v:\n%s", timeout+15*time.Second, timeout, out.String())
			}
			took := time.Since(called)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("exit %v, want a non-zero exit:\n%s", err, out.String())
			}
			t.Logf("exited %d %v after the hung GetPluginInfo call (--timeout=%v)", exit.ExitCode(), took.Round(10*time.Millisecond), timeout)
			if took < timeout-100*time.Millisecond || took > timeout+5*time.Second {
				t.Errorf("exited %v after the call, want about --timeout=%v", took, timeout)
			}
			if log := out.String(); !strings.Contains(log, "did not answer GetPluginInfo within "+timeout.String()+" (--timeout)") {
				t.Errorf("the log does not say GetPluginInfo timed out after --timeout=%v:\n%s", timeout, log)
			}
		})
	}
}

// startHungDriver serves hungIdentity on a socket in a new short directory
// (unix socket paths are limited).
func startHungDriver(t *testing.T) (dir, sock string, hung *hungIdentity) {
	dir, err := os.MkdirTemp("", "hub-hung-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock = filepath.Join(dir, "csi.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hung = &hungIdentity{calls: make(chan struct{}, 1)}
	csi.RegisterIdentityServer(srv, hung)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return dir, sock, hung
}
