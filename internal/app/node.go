package app

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/kubernetes-csi/csi-lib-utils/connection"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/registrar"
)

// ModeRegistrationProbe is node-driver-registrar's exec-probe mode.
const ModeRegistrationProbe = "kubelet-registration-probe"

// registrarTimeout is node-driver-registrar's --timeout default.
const registrarTimeout = time.Second

// NodeOptions are node mode's flags (node-driver-registrar's and livenessprobe's names).
type NodeOptions struct {
	KubeletRegistrationPath string
	PluginRegistrationPath  string
	// ConnectionTimeout is accepted and ignored, as in node-driver-registrar.
	ConnectionTimeout time.Duration
}

// AddFlags registers node mode's own flags.
func (o *NodeOptions) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.KubeletRegistrationPath, "kubelet-registration-path", "", "Path of the CSI driver socket on the host, e.g. /var/lib/kubelet/plugins/block.csi-hub.io/csi.sock (node mode).")
	fs.StringVar(&o.PluginRegistrationPath, "plugin-registration-path", "/registration", "Directory of the kubelet's plugin registration sockets as mounted in this container (node mode).")
	fs.DurationVar(&o.ConnectionTimeout, "connection-timeout", 0, "Deprecated and ignored, as in node-driver-registrar.")
}

// RegistrationProbe is --mode=kubelet-registration-probe: nil when the node
// mode process of this container recorded that the kubelet registered the driver.
func RegistrationProbe(o NodeOptions) error {
	if err := registrar.Registered(o.KubeletRegistrationPath); err != nil {
		return err
	}
	klog.InfoS("Kubelet plugin registration succeeded")
	return nil
}

// RunNode does node-driver-registrar's and livenessprobe's jobs: it registers the
// driver with the kubelet and serves /healthz (the driver's Probe on a fresh
// connection, plus the registration socket) on --health-port and, with
// --http-endpoint, /healthz and /metrics there.
func RunNode(ctx context.Context, common hub.Options, o NodeOptions) error {
	if o.ConnectionTimeout != 0 {
		klog.InfoS("--connection-timeout is deprecated and has no effect")
	}
	timeout := common.Tune(hub.Tuning{}, hub.Tuning{Timeout: registrarTimeout}).Timeout
	// As node-driver-registrar: wait for the socket, then a GetPluginInfo
	// that gets no answer within --timeout ends the process (non-zero exit).
	conn, err := csiconn.Connect(ctx, common.CSIAddress, csiconn.Options{CallTimeout: timeout, HungDriverFails: true})
	if err != nil {
		return err
	}
	defer conn.Close()
	cfg := registrar.Config{
		DriverName:              conn.DriverName,
		KubeletRegistrationPath: o.KubeletRegistrationPath,
		RegistrationDir:         o.PluginRegistrationPath,
	}
	if o.KubeletRegistrationPath != "" {
		cfg.StatusPath = registrar.StatusPath(o.KubeletRegistrationPath)
	}
	healthz := func(w http.ResponseWriter, r *http.Request) {
		pctx, cancel := context.WithTimeout(r.Context(), common.ProbeTimeout)
		defer cancel()
		err := csiconn.ProbeOnce(pctx, common.CSIAddress,
			connection.ExtendedCSIMetricsManager{CSIMetricsManager: conn.Metrics}.RecordMetricsClientInterceptor)
		if err == nil {
			err = cfg.Healthy()
		}
		if err != nil {
			klog.FromContext(r.Context()).Error(err, "Health check failed", "driver", conn.DriverName)
			http.Error(w, err.Error(), http.StatusInternalServerError) // as livenessprobe
			return
		}
		fmt.Fprintln(w, "ok")
	}
	if common.HTTPEndpoint != "" {
		mux := http.NewServeMux()
		mux.Handle(common.MetricsPath, hub.MetricsHandler(conn.Metrics.GetRegistry()))
		mux.HandleFunc("/healthz", healthz)
		if common.Compat.EnablePprof {
			hub.AddPprof(mux)
		}
		stop, err := hub.ServeHTTP(common.HTTPEndpoint, mux)
		if err != nil {
			return err
		}
		defer stop()
	}
	if addr := hub.HealthAddress(common); addr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", healthz)
		if stop, err := hub.ServeHTTP(addr, mux); err != nil {
			klog.ErrorS(err, "Cannot serve /healthz on --health-port; set --health-port=0 or another port", "address", addr)
		} else {
			defer stop()
		}
	}
	klog.InfoS("Node mode", "driver", conn.DriverName, "registration", cfg.SocketPath())
	start := time.Now()
	err = registrar.Run(ctx, cfg)
	klog.V(2).InfoS("Registrar stopped", "after", time.Since(start))
	return err
}
