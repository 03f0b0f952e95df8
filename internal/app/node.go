package app

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"time"

	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/registrar"
)

// NodeOptions are node mode's flags (node-driver-registrar's and livenessprobe's names).
type NodeOptions struct {
	KubeletRegistrationPath string
	PluginRegistrationPath  string
}

// AddFlags registers node mode's own flags.
func (o *NodeOptions) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.KubeletRegistrationPath, "kubelet-registration-path", "", "Path of the CSI driver socket on the host, e.g. /var/lib/kubelet/plugins/block.csi-hub.io/csi.sock (node mode).")
	fs.StringVar(&o.PluginRegistrationPath, "plugin-registration-path", "/registration", "Directory of the kubelet's plugin registration sockets as mounted in this container (node mode).")
}

// RunNode does node-driver-registrar's and livenessprobe's jobs: it registers the
// driver with the kubelet and serves /healthz (the driver's Probe plus the
// registration socket) and /metrics.
func RunNode(ctx context.Context, common hub.Options, o NodeOptions) error {
	conn, err := csiconn.Connect(ctx, common.CSIAddress, csiconn.Options{CallTimeout: common.ProbeTimeout * 3})
	if err != nil {
		return err
	}
	defer conn.Close()
	cfg := registrar.Config{
		DriverName:              conn.DriverName,
		KubeletRegistrationPath: o.KubeletRegistrationPath,
		RegistrationDir:         o.PluginRegistrationPath,
	}
	if common.HTTPEndpoint != "" {
		mux := http.NewServeMux()
		conn.Metrics.RegisterToServer(mux, common.MetricsPath)
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			pctx, cancel := context.WithTimeout(r.Context(), common.ProbeTimeout)
			defer cancel()
			if err := conn.Probe(pctx); err != nil {
				http.Error(w, "CSI probe: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			if err := cfg.Healthy(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		stop, err := hub.ServeHTTP(common.HTTPEndpoint, mux)
		if err != nil {
			return err
		}
		defer stop()
	}
	klog.InfoS("Node mode", "driver", conn.DriverName, "registration", cfg.SocketPath())
	start := time.Now()
	err = registrar.Run(ctx, cfg)
	klog.V(2).InfoS("Registrar stopped", "after", time.Since(start))
	return err
}
