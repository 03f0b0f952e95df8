// Package hub is csi-hub's shared runtime: one Kubernetes client, one informer
// factory, one event recorder, one driver connection, one leader election and
// one HTTP endpoint, used by every controller of the process.
package hub

import (
	"flag"
	"strings"
	"time"
)

// Options are the sidecars' standard flags (same names and defaults).
type Options struct {
	CSIAddress                  string
	Kubeconfig                  string
	LeaderElection              bool
	LeaderElectionNamespace     string
	LeaderElectionLeaseDuration time.Duration
	LeaderElectionRenewDeadline time.Duration
	LeaderElectionRetryPeriod   time.Duration
	KubeAPIQPS                  float64
	KubeAPIBurst                int
	HTTPEndpoint                string
	MetricsPath                 string
	ProbeTimeout                time.Duration
	RetryIntervalStart          time.Duration
	RetryIntervalMax            time.Duration
	Resync                      time.Duration
	// Controllers lists the controllers to run; empty means every controller
	// the driver's capabilities call for.
	Controllers []string
	// Timeout and WorkerThreads override every controller's own default when set.
	Timeout       time.Duration
	WorkerThreads int
	// StepBuffer is how many recent steps /steps keeps.
	StepBuffer int
	// Compat are the sidecars' other standard flags (compat.go).
	Compat Compat
}

// AddFlags registers the standard flags on fs.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.CSIAddress, "csi-address", "/run/csi/socket", "Address of the CSI driver socket.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Absolute path to the kubeconfig file; in-cluster config when empty.")
	fs.BoolVar(&o.LeaderElection, "leader-election", false, "Enable leader election (one Lease for all controllers).")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease; the pod's namespace when empty.")
	fs.DurationVar(&o.LeaderElectionLeaseDuration, "leader-election-lease-duration", 15*time.Second, "Duration non-leaders wait before forcing leadership.")
	fs.DurationVar(&o.LeaderElectionRenewDeadline, "leader-election-renew-deadline", 10*time.Second, "Duration the leader retries refreshing leadership before giving up.")
	fs.DurationVar(&o.LeaderElectionRetryPeriod, "leader-election-retry-period", 5*time.Second, "Duration between leader election attempts.")
	fs.Float64Var(&o.KubeAPIQPS, "kube-api-qps", 5, "QPS to use while communicating with the Kubernetes API server (shared by all controllers).")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", 10, "Burst to use while communicating with the Kubernetes API server.")
	fs.StringVar(&o.HTTPEndpoint, "http-endpoint", "", "TCP address of the HTTP server for /metrics, /healthz, /readyz and /steps (e.g. :8080); disabled when empty.")
	fs.StringVar(&o.MetricsPath, "metrics-path", "/metrics", "HTTP path of the Prometheus metrics.")
	fs.DurationVar(&o.ProbeTimeout, "probe-timeout", 3*time.Second, "Timeout of the CSI Probe call made by /healthz.")
	fs.DurationVar(&o.RetryIntervalStart, "retry-interval-start", time.Second, "Initial retry interval of failed operations; doubles on each failure.")
	fs.DurationVar(&o.RetryIntervalMax, "retry-interval-max", 5*time.Minute, "Maximum retry interval of failed operations.")
	fs.DurationVar(&o.Resync, "resync", 10*time.Minute, "Resync period of the shared informers.")
	fs.Func("controllers", "Comma-separated controllers to run; default: all that the driver's capabilities call for.", func(s string) error {
		o.Controllers = splitList(s)
		return nil
	})
	// The usage of --controllers, --timeout and --worker-threads names each
	// controller: internal/app completes it from its controller registry.
	fs.DurationVar(&o.Timeout, "timeout", 0, "Timeout of CSI calls; when unset each controller uses its sidecar's default.")
	fs.IntVar(&o.WorkerThreads, "worker-threads", 0, "Workers per controller; when unset each uses its sidecar's default.")
	fs.IntVar(&o.StepBuffer, "step-buffer", 2000, "How many recent steps /steps keeps.")
	o.Compat.addFlags(fs)
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
