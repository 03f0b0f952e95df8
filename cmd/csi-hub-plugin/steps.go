package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/steps"
)

// serveSteps serves the recorded calls on addr: the kubelet talks to this
// driver directly, so the node's NodeStage/NodePublish steps are only seen here.
func serveSteps(addr string, rec *steps.Recorder) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--steps-endpoint %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/steps", rec.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Steps endpoint failed")
		}
	}()
	klog.InfoS("Serving /steps", "address", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
