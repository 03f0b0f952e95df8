package app

import (
	"slices"
	"strings"
	"testing"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// --node-deployment keeps only the jobs with a per-node mode (provisioner,
// snapshotter), refuses leader election and an explicit request for another
// job, needs $NODE_NAME and hands the node to both jobs.
func TestApplyNodeDeployment(t *testing.T) {
	all := []string{"provisioner", "attacher", "resizer", "snapshotter", "health-monitor"}
	o := DefaultControllerOptions()
	if got, err := applyNodeDeployment(all, hub.Options{LeaderElection: true}, &o); err != nil || !slices.Equal(got, all) {
		t.Fatalf("without --node-deployment: %v, %v; want every controller unchanged", got, err)
	}

	o.Provisioner.NodeDeployment = true
	t.Setenv("NODE_NAME", "")
	if _, err := applyNodeDeployment(all, hub.Options{}, &o); err == nil || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Errorf("without NODE_NAME: %v, want an error naming it", err)
	}
	t.Setenv("NODE_NAME", "node-7")
	if _, err := applyNodeDeployment(all, hub.Options{LeaderElection: true}, &o); err == nil || !strings.Contains(err.Error(), "--leader-election") {
		t.Errorf("with --leader-election: %v, want a refusal", err)
	}
	got, err := applyNodeDeployment(all, hub.Options{}, &o)
	if err != nil || !slices.Equal(got, []string{"provisioner", "snapshotter"}) {
		t.Errorf("default selection: %v, %v; want [provisioner snapshotter]", got, err)
	}
	if o.Provisioner.NodeName != "node-7" || o.Snapshotter.NodeName != "node-7" {
		t.Errorf("node names: provisioner %q, snapshotter %q; want node-7 from NODE_NAME", o.Provisioner.NodeName, o.Snapshotter.NodeName)
	}
	if _, err := applyNodeDeployment([]string{"provisioner", "attacher"}, hub.Options{Controllers: []string{"provisioner", "attacher"}}, &o); err == nil || !strings.Contains(err.Error(), "attacher") {
		t.Errorf("--controllers=provisioner,attacher: %v, want a refusal naming the attacher", err)
	}
}
