// Command csi-hub-plugin is the csi-hub CSI driver: Identity plus Controller
// (storage host: pool of backing files) and/or Node (attach, mkfs, mount) on
// one unix socket.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/plugin"
	"github.com/csi-hub/csi-hub/plugin/transport/loop"
	"github.com/csi-hub/csi-hub/plugin/transport/nvme"
)

type options struct {
	endpoint, mode, nodeID, driverName, poolDir, poolCapacity, nodeStateDir string
	stepsEndpoint                                                           string
	maxVolumes                                                              int64
	nodeLocalPool                                                           bool
	transport                                                               transportOptions
}

func main() {
	klog.InitFlags(nil)
	var o options
	o.addFlags(flag.CommandLine)
	flag.Parse()
	if err := run(o); err != nil {
		klog.ErrorS(err, "csi-hub-plugin failed")
		fmt.Fprintln(os.Stderr, "csi-hub-plugin:", err)
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

// addFlags registers the plugin's flags on fs.
func (o *options) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint (unix socket)")
	fs.StringVar(&o.mode, "mode", "all", "services to serve: controller, node or all")
	fs.StringVar(&o.nodeID, "node-id", "", "this node's ID (required); in controller mode, the storage host's node")
	fs.StringVar(&o.driverName, "driver-name", "block.csi-hub.io", "CSI driver name")
	fs.StringVar(&o.poolDir, "pool-dir", "/var/lib/csi-hub/pool", "directory of volume backing files and the record store (controller)")
	fs.StringVar(&o.poolCapacity, "pool-capacity", "", "limit on provisioned bytes of all volumes and snapshots, e.g. 10Gi (default: size of the pool filesystem)")
	fs.StringVar(&o.nodeStateDir, "node-state-dir", plugin.DefaultNodeStateDir, "directory of the node's per-volume records (node)")
	fs.Int64Var(&o.maxVolumes, "max-volumes-per-node", 0, "NodeGetInfo max_volumes_per_node (0: no limit)")
	fs.BoolVar(&o.nodeLocalPool, "node-local-pool", false, "node-local mode: every node runs --mode=all with its own loop pool (csi-hub --node-deployment beside it, "+
		"CSIDriver attachRequired: false, no ControllerPublishVolume); NodeStageVolume with an empty publish_context stages the volume from this node's own pool, "+
		"and a volume not in it is NotFound. Needs --mode=all and --transport=loop. Off: an empty publish_context is refused (attachRequired: true)")
	fs.StringVar(&o.stepsEndpoint, "steps-endpoint", "", "TCP address serving /steps, the calls this driver served (e.g. the kubelet's NodeStageVolume), for csi-hub's /flow page; empty: off")
	o.transport.addFlags(fs)
}

func run(o options) error {
	ctrlMode, nodeMode := false, false
	switch o.mode {
	case "controller":
		ctrlMode = true
	case "node":
		nodeMode = true
	case "all":
		ctrlMode, nodeMode = true, true
	default:
		return fmt.Errorf("--mode %q: want controller, node or all", o.mode)
	}
	if o.transport.name == "" {
		o.transport.name = loop.Name
	}
	if o.nodeLocalPool && (o.mode != "all" || o.transport.name != loop.Name) {
		return fmt.Errorf("--node-local-pool needs --mode=all and --transport=loop (the node stages from the pool its own controller serves), not --mode=%s --transport=%s", o.mode, o.transport.name)
	}
	// With nvme a node's ID is its host NQN, read from the machine.
	if o.nodeID == "" && (ctrlMode || o.transport.name != nvme.Name) {
		return fmt.Errorf("--node-id is required")
	}
	if o.driverName == "" {
		return fmt.Errorf("--driver-name must not be empty")
	}
	var capacity int64
	if o.poolCapacity != "" {
		q, err := resource.ParseQuantity(o.poolCapacity)
		if err != nil || q.Sign() <= 0 {
			return fmt.Errorf("--pool-capacity %q: want a positive size such as 10Gi", o.poolCapacity)
		}
		capacity = q.Value()
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	cfg := plugin.ServerConfig{Endpoint: o.endpoint, DriverName: o.driverName}
	var local plugin.LocalPool
	if ctrlMode {
		if o.poolDir == "" {
			return fmt.Errorf("--pool-dir is required in mode %s", o.mode)
		}
		target, err := o.transport.target(o.driverName, o.nodeID)
		if err != nil {
			return err
		}
		ctrl, err := plugin.NewControllerServer(ctx, plugin.ControllerConfig{DriverName: o.driverName, NodeID: o.nodeID,
			PoolDir: o.poolDir, Capacity: capacity, Target: target})
		if err != nil {
			return err
		}
		defer ctrl.Close()
		cfg.Controller, cfg.Ready = ctrl, ctrl.Ready
		if o.nodeLocalPool {
			local = ctrl
		}
	}
	if nodeMode {
		initiator, nodeID, topology, err := o.transport.initiator(o.driverName, o.nodeID)
		if err != nil {
			return err
		}
		node, err := plugin.NewNodeServer(plugin.NodeConfig{DriverName: o.driverName, NodeID: nodeID,
			Topology: topology, Initiator: initiator, MaxVolumes: o.maxVolumes, StateDir: o.nodeStateDir, LocalPool: local})
		if err != nil {
			return err
		}
		cfg.Node = node
	}
	if o.stepsEndpoint != "" {
		cfg.Steps = steps.NewRecorder(1000)
		stop, err := serveSteps(o.stepsEndpoint, cfg.Steps)
		if err != nil {
			return err
		}
		defer stop()
	}
	srv, err := plugin.Serve(cfg)
	if err != nil {
		return err
	}
	klog.InfoS("csi-hub-plugin started", "mode", o.mode, "transport", o.transport.name, "driver", o.driverName, "node", o.nodeID,
		"nodeLocalPool", o.nodeLocalPool, "version", plugin.Version)
	select {
	case <-ctx.Done():
		klog.InfoS("Signal received, stopping")
		srv.Stop()
		return nil
	case err := <-srv.Done():
		return err
	}
}
