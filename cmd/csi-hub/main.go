// csi-hub runs the jobs of the CSI sidecars in one process.
//
//	csi-hub --mode=controller  provisioner, attacher, resizer, snapshotter and
//	                           livenessprobe for one driver (Deployment)
//	csi-hub --mode=node        node-driver-registrar and livenessprobe (DaemonSet)
//	csi-hub explain pvc/NS/NAME  the story of one object, in numbered steps
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/app"
	"github.com/csi-hub/csi-hub/internal/flow"
	"github.com/csi-hub/csi-hub/internal/hub"
)

var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "explain" {
		os.Exit(flow.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:]))
}

// cli is csi-hub's command line: every flag of the six sidecars it replaces.
type cli struct {
	fs          *flag.FlagSet
	mode        *string
	showVersion *bool
	common      hub.Options
	ctrl        app.ControllerOptions
	node        app.NodeOptions
}

func newCLI() *cli {
	c := &cli{fs: flag.NewFlagSet("csi-hub", flag.ContinueOnError), ctrl: app.DefaultControllerOptions()}
	fs := c.fs
	hub.AddKlogFlags(fs)
	c.mode = fs.String("mode", "controller", "controller (the controller sidecars' jobs), node (node-driver-registrar's and livenessprobe's jobs) or kubelet-registration-probe (exit 0 when the kubelet has registered the driver, as node-driver-registrar's exec probe).")
	c.showVersion = fs.Bool("version", false, "Print the version and exit.")
	c.common.AddFlags(fs)
	c.ctrl.AddFlags(fs)
	app.AddSidecarFlags(fs, &c.ctrl)
	c.node.AddFlags(fs)
	return c
}

func run(args []string) int {
	c := newCLI()
	fs, mode, showVersion := c.fs, c.mode, c.showVersion
	common, ctrl, node := &c.common, &c.ctrl, &c.node
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println("csi-hub", version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "csi-hub: unexpected arguments %v\n", fs.Args())
		return 2
	}
	if err := common.Apply(); err != nil {
		fmt.Fprintf(os.Stderr, "csi-hub: %v\n", err)
		return 2
	}
	app.ApplySidecarGates(*common, ctrl)
	hub.SetGCPercentDefault()
	hub.SetMemProfiling(common.Compat.EnablePprof)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	defer klog.Flush()

	var err error
	switch *mode {
	case "controller":
		err = app.RunController(ctx, *common, *ctrl)
	case "node":
		err = app.RunNode(ctx, *common, *node)
	case app.ModeRegistrationProbe:
		err = app.RegistrationProbe(*node)
	default:
		fmt.Fprintf(os.Stderr, "csi-hub: --mode must be controller, node or %s, not %q\n", app.ModeRegistrationProbe, *mode)
		return 2
	}
	if err != nil {
		klog.ErrorS(err, "csi-hub stopped")
		return 1
	}
	return 0
}
