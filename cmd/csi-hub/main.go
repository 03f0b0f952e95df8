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

func run(args []string) int {
	fs := flag.NewFlagSet("csi-hub", flag.ContinueOnError)
	klog.InitFlags(fs)
	mode := fs.String("mode", "controller", "controller (the controller sidecars' jobs) or node (node-driver-registrar's and livenessprobe's jobs).")
	showVersion := fs.Bool("version", false, "Print the version and exit.")
	var common hub.Options
	common.AddFlags(fs)
	ctrl := app.DefaultControllerOptions()
	ctrl.AddFlags(fs)
	var node app.NodeOptions
	node.AddFlags(fs)
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	defer klog.Flush()

	var err error
	switch *mode {
	case "controller":
		err = app.RunController(ctx, common, ctrl)
	case "node":
		err = app.RunNode(ctx, common, node)
	default:
		fmt.Fprintf(os.Stderr, "csi-hub: --mode must be controller or node, not %q\n", *mode)
		return 2
	}
	if err != nil {
		klog.ErrorS(err, "csi-hub stopped")
		return 1
	}
	return 0
}
