package fakedriver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// client is what a sidecar has: gRPC clients over the driver's unix socket.
type client struct {
	id     csi.IdentityClient
	ctrl   csi.ControllerClient
	node   csi.NodeClient
	socket string
}

// socketPath returns a short socket path: unix socket paths are limited to
// 108 bytes and t.TempDir() paths of long test names exceed that.
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fakedrv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "csi.sock")
}

// startDriver starts a driver on a fresh socket and connects to it.
func startDriver(t *testing.T, opts Options) (*Driver, *client) {
	t.Helper()
	d := New(opts)
	sock := socketPath(t)
	if err := d.Start(sock); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { d.ClearFaults(); d.StopNow() })
	return d, dial(t, sock)
}

func dial(t testing.TB, sock string) *client {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{id: csi.NewIdentityClient(conn), ctrl: csi.NewControllerClient(conn), node: csi.NewNodeClient(conn), socket: sock}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

var rwo = mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)

func createReq(name string, required int64) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{
		Name:               name,
		CapacityRange:      &csi.CapacityRange{RequiredBytes: required},
		VolumeCapabilities: []*csi.VolumeCapability{rwo},
	}
}

func mustCreate(t *testing.T, c *client, req *csi.CreateVolumeRequest) *csi.Volume {
	t.Helper()
	resp, err := c.ctrl.CreateVolume(ctx(t), req)
	if err != nil {
		t.Fatalf("CreateVolume(%s): %v", req.GetName(), err)
	}
	return resp.GetVolume()
}

func mustSnapshot(t *testing.T, c *client, name, source string) *csi.Snapshot {
	t.Helper()
	resp, err := c.ctrl.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: source})
	if err != nil {
		t.Fatalf("CreateSnapshot(%s): %v", name, err)
	}
	return resp.GetSnapshot()
}

// wantCode fails unless err is a gRPC status with code whose message
// contains every fragment (the field it names, typically).
func wantCode(t *testing.T, err error, code codes.Code, fragments ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	for _, f := range fragments {
		if !strings.Contains(st.Message(), f) {
			t.Fatalf("error %q does not mention %q", st.Message(), f)
		}
	}
}

const mib = int64(1 << 20)
