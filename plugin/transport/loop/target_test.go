package loop

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/plugin/transport"
)

func TestTargetPublish(t *testing.T) {
	if _, err := NewTarget(TargetConfig{NodeID: "n1"}); err == nil {
		t.Fatal("target without topology key accepted")
	}
	tg, err := NewTarget(TargetConfig{NodeID: "n1", TopologyKey: "topology.x/node"})
	if err != nil {
		t.Fatal(err)
	}
	vol := transport.Volume{ID: "vol-1", BackingFile: "/pool/vol-1.img", SizeBytes: 1}
	pc, err := tg.Publish(context.Background(), vol, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if pc[transport.KeyTransport] != "loop" || pc[transport.KeyVolumeID] != "vol-1" || pc[KeyBackingFile] != "/pool/vol-1.img" {
		t.Fatalf("publish context %v", pc)
	}
	if _, err := tg.Publish(context.Background(), vol, "n2"); status.Code(err) != codes.NotFound {
		t.Fatalf("publish to a node without the pool: %v", err)
	}
	if topo := tg.AccessibleTopology(); len(topo) != 1 || topo["topology.x/node"] != "n1" {
		t.Fatalf("topology %v", topo)
	}
}
