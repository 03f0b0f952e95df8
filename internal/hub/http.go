package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/flow"
)

// Handler returns the hub's HTTP endpoints: metrics, /healthz (the CSI Probe,
// livenessprobe's job), /readyz (informers synced, leading, driver answering)
// /steps (the recorded flow) and /flow (the page drawing it).
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	h.Conn.Metrics.RegisterToServer(mux, h.Opts.MetricsPath)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := h.probe(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
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
	mux.Handle("/flow", flow.Handler())
	mux.Handle("/flow/", flow.Handler())
	return mux
}

func (h *Hub) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.Opts.ProbeTimeout)
	defer cancel()
	if err := h.Conn.Probe(ctx); err != nil {
		return fmt.Errorf("CSI probe: %w", err)
	}
	return nil
}

func (h *Hub) serveHTTP(ctx context.Context) (stop func(), err error) {
	return ServeHTTP(h.Opts.HTTPEndpoint, h.Handler())
}

// ServeHTTP serves handler on addr in the background until stop is called.
func ServeHTTP(addr string, handler http.Handler) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-endpoint %s: %w", addr, err)
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
