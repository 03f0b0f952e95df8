package app

import (
	"context"

	"github.com/csi-hub/csi-hub/internal/cfgflag"
	"github.com/csi-hub/csi-hub/internal/hub"
)

// binding ties a registry entry to its controller: where its Config sits in
// ControllerOptions, and how it is built from the hub.
type binding struct {
	// own is the controller's --<name>-worker-threads and --<name>-timeout.
	own   func(*ControllerOptions) *cfgflag.Tuning
	build func(ctx context.Context, h *hub.Hub, o *ControllerOptions) (hub.Controller, error)
}

// bind makes the binding of a controller from its Config's place in
// ControllerOptions, its Deps function (deps.go) and its New: every
// controller is built the same way, Deps from the hub, then New.
func bind[C any, P interface {
	*C
	Own() *cfgflag.Tuning
}, D any, K hub.Controller](config func(*ControllerOptions) P,
	deps func(*hub.Hub, C) (D, error), newController func(context.Context, D, C) (K, error)) binding {
	return binding{
		own: func(o *ControllerOptions) *cfgflag.Tuning { return config(o).Own() },
		build: func(ctx context.Context, h *hub.Hub, o *ControllerOptions) (hub.Controller, error) {
			cfg := *config(o)
			d, err := deps(h, cfg)
			if err != nil {
				return nil, err
			}
			c, err := newController(ctx, d, cfg)
			if err != nil {
				return nil, err
			}
			return c, nil
		}}
}

// infallible is a Deps function that cannot fail, for bind.
func infallible[C, D any](deps func(*hub.Hub, C) D) func(*hub.Hub, C) (D, error) {
	return func(h *hub.Hub, cfg C) (D, error) { return deps(h, cfg), nil }
}
