package app

import (
	"fmt"
	"os"
	"slices"

	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/provisioner"
	"github.com/csi-hub/csi-hub/snapshotter"
)

// nodeDeploymentJobs are the controllers that run once per node with
// --node-deployment: external-provisioner and csi-snapshotter have such a
// mode; the attacher, resizer and health monitor have none, and one copy per
// node would act on every node's objects at once.
var nodeDeploymentJobs = []string{provisioner.Name, snapshotter.Name}

// applyNodeDeployment narrows the selected controllers for --node-deployment
// and gives the provisioner and snapshotter this node's name ($NODE_NAME
// unless set). Leader election is refused, as csi-snapshotter refuses it: one
// Lease for all nodes would let a single node work.
func applyNodeDeployment(names []string, opts hub.Options, o *ControllerOptions) ([]string, error) {
	if !o.Provisioner.NodeDeployment {
		return names, nil
	}
	if opts.LeaderElection {
		return nil, fmt.Errorf("--leader-election cannot be used with --node-deployment: each node's csi-hub works for its own node")
	}
	node := o.Provisioner.NodeName
	if node == "" {
		node = os.Getenv(provisioner.EnvNodeName)
	}
	if node == "" {
		return nil, fmt.Errorf("--node-deployment: the %s environment variable must be set (to the pod's spec.nodeName)", provisioner.EnvNodeName)
	}
	o.Provisioner.NodeName, o.Snapshotter.NodeName = node, node
	var out []string
	for _, n := range names {
		switch {
		case slices.Contains(nodeDeploymentJobs, n):
			out = append(out, n)
		case slices.Contains(opts.Controllers, n):
			return nil, fmt.Errorf("--controllers: %s has no node deployment; run it in a central csi-hub (--node-deployment runs only %v)", n, nodeDeploymentJobs)
		default:
			klog.InfoS("Not running controller with --node-deployment (it has no per-node mode)", "controller", n)
		}
	}
	return out, nil
}
