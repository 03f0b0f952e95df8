package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/flow"

	// client-go's workqueue and leader election metrics, registered in the
	// legacy registry as the sidecars do (workqueue_*, leader_election_master_status).
	_ "k8s.io/component-base/metrics/prometheus/clientgo/leaderelection"
	_ "k8s.io/component-base/metrics/prometheus/workqueue"
)

// Handler returns the hub's HTTP endpoints: metrics, /healthz (the CSI Probe,
// livenessprobe's job), /healthz/leader-election (the sidecars' lease check),
// /readyz (informers synced, leading, driver answering), /steps (the
// recorded flow) and /flow (the page drawing it).
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(h.Opts.MetricsPath, MetricsHandler(h.Conn.Metrics.GetRegistry(), h.Metrics))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := h.probe(r.Context()); err != nil {
			// 500 as livenessprobe answers.
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/healthz/leader-election", func(w http.ResponseWriter, r *http.Request) {
		if err := h.leaderHealth.Check(r); err != nil {
			http.Error(w, fmt.Sprintf("internal server error: %v", err), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		var problems []string
		if !h.leading.Load() {
			problems = append(problems, "not the leader")
		} else if !h.synced.Load() {
			problems = append(problems, "informers not synced")
		}
		if err := h.probe(r.Context()); err != nil {
			problems = append(problems, err.Error())
		}
		if len(problems) > 0 {
			http.Error(w, fmt.Sprint(problems), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/steps", h.Steps.Handler())
	// The page drawing the steps for people learning Kubernetes storage.
	mux.Handle("/flow", flow.Handler())
	mux.Handle("/flow/", flow.Handler())
	if h.Opts.Compat.EnablePprof {
		AddPprof(mux)
	}
	return mux
}

// MetricsHandler serves the given registries together with the legacy
// registry, where client-go's workqueue and leader election metrics live (as
// external-provisioner gathers them).
func MetricsHandler(gatherers ...prometheus.Gatherer) http.Handler {
	all := prometheus.Gatherers{legacyregistry.DefaultGatherer}
	for _, g := range gatherers {
		if g != nil {
			all = append(all, g)
		}
	}
	return promhttp.HandlerFor(all, promhttp.HandlerOpts{})
}

// AddPprof serves pprof under /debug/pprof/ (--enable-pprof).
func AddPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

func (h *Hub) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.Opts.ProbeTimeout)
	defer cancel()
	if err := h.Conn.Probe(ctx); err != nil {
		return fmt.Errorf("CSI probe: %w", err)
	}
	return nil
}

// serveHTTP serves the hub's endpoints on --http-endpoint and /healthz on
// --health-port (livenessprobe's 9808 unless 0), so a driver container's
// livenessProbe aimed at the livenessprobe sidecar's port keeps working.
func (h *Hub) serveHTTP(ctx context.Context) (stop func(), err error) {
	var stops []func()
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	if h.Opts.HTTPEndpoint != "" {
		s, err := ServeHTTP(h.Opts.HTTPEndpoint, h.Handler())
		if err != nil {
			return nil, err
		}
		stops = append(stops, s)
	}
	if addr := HealthAddress(h.Opts); addr != "" {
		mux := http.NewServeMux()
		mux.Handle("/healthz", h.Handler())
		// Not fatal: two csi-hub processes on one host (benchmarks, tests)
		// share the default port; a probe aimed at it fails visibly.
		if s, err := ServeHTTP(addr, mux); err != nil {
			klog.ErrorS(err, "Cannot serve /healthz on --health-port; set --health-port=0 or another port", "address", addr)
		} else {
			stops = append(stops, s)
		}
	}
	return stopAll, nil
}

// HealthAddress is where --health-port serves /healthz: empty when it is 0,
// unset (options built in code) or the --http-endpoint's own port.
func HealthAddress(o Options) string {
	port := o.Compat.HealthPort
	if port == "" || port == "0" {
		return ""
	}
	if _, p, err := net.SplitHostPort(o.HTTPEndpoint); err == nil && p == port {
		return ""
	}
	return net.JoinHostPort("0.0.0.0", port)
}

// ServeHTTP serves handler on addr in the background until stop is called.
func ServeHTTP(addr string, handler http.Handler) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("HTTP endpoint %s: %w", addr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "HTTP server failed")
		}
	}()
	klog.InfoS("Serving HTTP", "address", ln.Addr().String())
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}
