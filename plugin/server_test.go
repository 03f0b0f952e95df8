package plugin_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/plugin"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/plugin/transport/loop"
)

func TestIdentity(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{DriverName: "test.csi-hub.io"})
	ic := d.IdentityClient()
	ctx := context.Background()
	info, err := ic.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil || info.GetName() != "test.csi-hub.io" || info.GetVendorVersion() == "" {
		t.Fatalf("plugin info %v %v", info, err)
	}
	probe, err := ic.Probe(ctx, &csi.ProbeRequest{})
	if err != nil || !probe.GetReady().GetValue() {
		t.Fatalf("probe %v %v", probe, err)
	}
	caps, err := ic.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// A pool that went away makes Probe fail.
		if err := os.RemoveAll(d.PoolDir); err != nil {
			t.Fatal(err)
		}
		if _, err := ic.Probe(ctx, &csi.ProbeRequest{}); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("probe without pool: %v", err)
		}
	}()
	var ctrl, topo bool
	for _, c := range caps.GetCapabilities() {
		switch c.GetService().GetType() {
		case csi.PluginCapability_Service_CONTROLLER_SERVICE:
			ctrl = true
		case csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS:
			topo = true
		}
	}
	if !ctrl || !topo {
		t.Fatalf("capabilities %v", caps)
	}
	cc, err := d.ControllerClient().ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
	if err != nil || len(cc.GetCapabilities()) < 14 {
		t.Fatalf("controller capabilities %v %v", cc, err)
	}
}

// TestServeModes checks a stale socket is replaced and that a node-only
// server neither serves nor advertises the controller.
func TestServeModes(t *testing.T) {
	dir, err := os.MkdirTemp("", "csi-hub-srv-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "csi.sock")
	if err := os.WriteFile(sock, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	node, err := plugin.NewNodeServer(plugin.NodeConfig{DriverName: "block.csi-hub.io", NodeID: "n1",
		Initiator: loop.NewInitiator(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := plugin.Serve(plugin.ServerConfig{Endpoint: "unix://" + sock, DriverName: "block.csi-hub.io", Node: node})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	caps, err := csi.NewIdentityClient(conn).GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range caps.GetCapabilities() {
		if c.GetService().GetType() == csi.PluginCapability_Service_CONTROLLER_SERVICE {
			t.Fatal("node-only server advertises the controller service")
		}
	}
	_, err = csi.NewControllerClient(conn).ListVolumes(ctx, &csi.ListVolumesRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("controller call on node-only server: %v", err)
	}
	if _, err := plugin.Serve(plugin.ServerConfig{Endpoint: "tcp://127.0.0.1:1"}); err == nil {
		t.Fatal("tcp endpoint accepted")
	}
}
