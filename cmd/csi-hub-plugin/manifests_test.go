package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"
)

// The node plugin's args in manifests/node-local/ (which test/chart checks the
// chart renders too) are flags of this binary and give the node-local mode:
// --mode=all on the node's own pool with --node-local-pool, loop transport.
func TestNodeLocalManifestFlags(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "manifests", "node-local", "node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.Unmarshal(raw, &ds); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "plugin" {
			args = c.Args
		}
	}
	if len(args) == 0 {
		t.Fatal("manifests/node-local/node.yaml has no plugin container args")
	}
	fs := flag.NewFlagSet("csi-hub-plugin", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	klog.InitFlags(fs)
	var o options
	o.addFlags(fs)
	if err := fs.Parse(strings.Split(strings.ReplaceAll(strings.Join(args, "\x00"), "$(NODE_NAME)", "node-1"), "\x00")); err != nil {
		t.Fatalf("plugin args %v: %v", args, err)
	}
	if o.mode != "all" || !o.nodeLocalPool || o.poolDir != "/var/lib/csi-hub/pool" || o.nodeID != "node-1" || o.transport.name != "loop" {
		t.Errorf("plugin args %v give mode %q, node-local-pool %v, pool %q, node %q, transport %q; want all, true, /var/lib/csi-hub/pool, node-1, loop",
			args, o.mode, o.nodeLocalPool, o.poolDir, o.nodeID, o.transport.name)
	}
}
