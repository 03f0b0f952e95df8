// Package hubtest runs a csi-hub in-process for integration tests: against a
// real API server (test/cluster) and a real driver socket, with the controllers
// the test adds.
package hubtest

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// Options returns hub options for tests: the sidecars' defaults with short retry
// intervals and resync, so failures converge within a test's patience.
func Options(socket string) hub.Options {
	return hub.Options{
		CSIAddress:                  socket,
		KubeAPIQPS:                  50,
		KubeAPIBurst:                100,
		MetricsPath:                 "/metrics",
		ProbeTimeout:                3 * time.Second,
		RetryIntervalStart:          100 * time.Millisecond,
		RetryIntervalMax:            2 * time.Second,
		Resync:                      30 * time.Second,
		LeaderElectionLeaseDuration: 15 * time.Second,
		LeaderElectionRenewDeadline: 10 * time.Second,
		LeaderElectionRetryPeriod:   2 * time.Second,
		StepBuffer:                  5000,
	}
}

// Running is a hub started by Start.
type Running struct {
	*hub.Hub
	cancel context.CancelFunc
	done   chan error
}

// Start connects a hub to the driver at opts.CSIAddress, lets add register
// controllers, and runs it until Stop or the end of the test.
func Start(t testing.TB, cfg *rest.Config, opts hub.Options, add func(h *hub.Hub) error) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cctx, ccancel := context.WithTimeout(ctx, time.Minute)
	defer ccancel()
	h, err := hub.New(cctx, opts, cfg)
	if err != nil {
		cancel()
		t.Fatalf("starting hub: %v", err)
	}
	if add != nil {
		if err := add(h); err != nil {
			cancel()
			t.Fatalf("adding controllers: %v", err)
		}
	}
	r := &Running{Hub: h, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- h.Run(ctx) }()
	t.Cleanup(func() { r.Stop() })
	return r
}

// Stop stops the hub and waits for its controllers to return. Safe to call twice.
func (r *Running) Stop() error {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(30 * time.Second):
		return context.DeadlineExceeded
	}
}
