// Package app assembles csi-hub's two modes from the shared core and the
// controller packages.
package app

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/client-go/rest"

	"github.com/csi-hub/csi-hub/attacher"
	"github.com/csi-hub/csi-hub/healthmonitor"
	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/provisioner"
	"github.com/csi-hub/csi-hub/resizer"
	"github.com/csi-hub/csi-hub/snapshotter"
)

// ControllerOptions are the controllers' own flags.
type ControllerOptions struct {
	Provisioner provisioner.Config
	Attacher    attacher.Config
	Snapshotter snapshotter.Config
	Resizer     resizer.Config

	annotateSet bool // --resizer-annotate-fs-resize was given
	Health      healthmonitor.Config
}

// DefaultControllerOptions returns every controller's sidecar defaults.
func DefaultControllerOptions() ControllerOptions {
	return ControllerOptions{
		Provisioner: provisioner.DefaultConfig(),
		Attacher:    attacher.DefaultConfig(),
		Snapshotter: snapshotter.DefaultConfig(),
		Resizer:     resizer.DefaultConfig(),
		Health:      healthmonitor.DefaultConfig(),
	}
}

// AddFlags registers the controllers' flags. The provisioner's go first: the
// snapshotter shares --extra-create-metadata with it. Then the settings every
// controller has (tuning.go), from the registry.
func (o *ControllerOptions) AddFlags(fs *flag.FlagSet) {
	o.Provisioner.AddFlags(fs)
	o.Attacher.AddFlags(fs)
	o.Snapshotter.AddFlags(fs)
	o.Resizer.AddFlags(fs)
	o.Health.AddFlags(fs)
	addTuningFlags(fs, o)
}

// controllerSpec says when a controller is called for and how to build it.
type controllerSpec struct {
	name string
	// needs is the capability without which the controller has nothing to do;
	// unset for the attacher, which marks attachments attached itself when the
	// driver has no PUBLISH_UNPUBLISH_VOLUME, as external-attacher does.
	needs csi.ControllerServiceCapability_RPC_Type
	// needsAny: one of these suffices (the resizer expands or modifies).
	needsAny []csi.ControllerServiceCapability_RPC_Type
	// also: a further condition on the capabilities (nil: none).
	also func(csiconn.Capabilities) bool
	// tuning describes the controller's --<name>-worker-threads and
	// --<name>-timeout (tuning.go).
	tuning tuningSpec
	binding
}

var controllerSpecs = []controllerSpec{
	{name: "provisioner", needs: csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		tuning: tuningSpec{sidecar: "external-provisioner", defaults: provisioner.Defaults,
			workers: "Provisioner workers, for PVCs and for PVs each", timeout: "CreateVolume/DeleteVolume calls"},
		binding: bind(func(o *ControllerOptions) *provisioner.Config { return &o.Provisioner }, infallible(ProvisionerDeps), provisioner.New)},
	{name: "attacher",
		tuning: tuningSpec{sidecar: "external-attacher", defaults: attacher.Defaults,
			workers: "Attacher workers per queue", timeout: "ControllerPublish/ControllerUnpublish/ListVolumes calls"},
		binding: bind(func(o *ControllerOptions) *attacher.Config { return &o.Attacher }, AttacherDeps, attacher.New)},
	{name: "resizer", needsAny: []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME, csi.ControllerServiceCapability_RPC_MODIFY_VOLUME},
		tuning: tuningSpec{sidecar: "external-resizer", workersFlag: "workers", defaults: resizer.Defaults,
			workers: "Resizer workers per queue", timeout: "ControllerExpandVolume/ControllerModifyVolume calls"},
		binding: bind(func(o *ControllerOptions) *resizer.Config { return &o.Resizer }, infallible(ResizerDeps), resizer.New)},
	{name: "snapshotter", needs: csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		tuning: tuningSpec{sidecar: "csi-snapshotter", defaults: snapshotter.Defaults,
			workers: "Snapshotter workers", timeout: "the snapshotter's CSI calls"},
		binding: bind(func(o *ControllerOptions) *snapshotter.Config { return &o.Snapshotter }, SnapshotterDeps, snapshotter.New)},
	{name: healthmonitor.Name, needsAny: []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH, healthmonitor.CapVolumeCondition},
		also: func(caps csiconn.Capabilities) bool { return healthmonitor.Capable(caps.Has) },
		tuning: tuningSpec{sidecar: "external-health-monitor-controller", defaults: healthmonitor.Defaults,
			workers: "Health monitor's concurrent volume checks", timeout: "the health monitor's CSI calls"},
		binding: bind(func(o *ControllerOptions) *healthmonitor.Config { return &o.Health }, infallible(HealthMonitorDeps), healthmonitor.New)},
}

func (s controllerSpec) capable(caps csiconn.Capabilities) bool {
	if s.needs != csi.ControllerServiceCapability_RPC_UNKNOWN && !caps.Has(s.needs) {
		return false
	}
	if s.also != nil && !s.also(caps) {
		return false
	}
	if len(s.needsAny) == 0 {
		return true
	}
	return slices.ContainsFunc(s.needsAny, caps.Has)
}

func (s controllerSpec) needsText() string {
	if len(s.needsAny) == 0 {
		return s.needs.String()
	}
	var names []string
	for _, c := range s.needsAny {
		names = append(names, c.String())
	}
	return strings.Join(names, " or ")
}

// ControllerNames lists every controller csi-hub has.
func ControllerNames() []string {
	names := make([]string, len(controllerSpecs))
	for i, s := range controllerSpecs {
		names[i] = s.name
	}
	return names
}

// Select returns the controllers to run: those requested (an error names any
// unknown controller, or one the driver lacks the capability for), or, when none
// is requested, every controller the driver's capabilities call for.
func Select(requested []string, caps csiconn.Capabilities, driver string) ([]string, error) {
	for _, r := range requested {
		if !slices.Contains(ControllerNames(), r) {
			return nil, fmt.Errorf("--controllers: unknown controller %q (known: %v)", r, ControllerNames())
		}
	}
	var out []string
	for _, s := range controllerSpecs {
		wanted := len(requested) == 0 || slices.Contains(requested, s.name)
		capable := s.capable(caps)
		switch {
		case wanted && capable:
			out = append(out, s.name)
		case len(requested) > 0 && wanted:
			return nil, fmt.Errorf("--controllers: %s needs the CSI capability %s, which driver %s does not have", s.name, s.needsText(), driver)
		}
	}
	return out, nil
}

// AddControllers builds the selected controllers on h.
func AddControllers(ctx context.Context, h *hub.Hub, o *ControllerOptions) error {
	if err := validateTuning(o); err != nil {
		return err
	}
	names, err := Select(h.Opts.Controllers, h.Conn.Caps, h.Driver)
	if err != nil {
		return err
	}
	if names, err = applyNodeDeployment(names, h.Opts, o); err != nil {
		return err
	}
	for _, s := range controllerSpecs {
		if !slices.Contains(names, s.name) {
			continue
		}
		c, err := s.build(ctx, h, o)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		h.Add(c)
	}
	return nil
}

// RunController runs controller mode until ctx ends or the lease is lost.
func RunController(ctx context.Context, common hub.Options, o ControllerOptions) error {
	cfg, err := hub.RestConfig(common.Kubeconfig)
	if err != nil {
		return fmt.Errorf("reading the Kubernetes client configuration: %w", err)
	}
	return RunControllerWithConfig(ctx, cfg, common, o)
}

// RunControllerWithConfig is RunController with a given client configuration.
func RunControllerWithConfig(ctx context.Context, cfg *rest.Config, common hub.Options, o ControllerOptions) error {
	h, err := NewController(ctx, cfg, common, o)
	if err != nil {
		return err
	}
	defer h.Conn.Close()
	return h.Run(ctx)
}

// NewController connects to the driver and builds the hub with its controllers,
// ready to Run.
func NewController(ctx context.Context, cfg *rest.Config, common hub.Options, o ControllerOptions) (*hub.Hub, error) {
	h, err := hub.New(ctx, common, cfg)
	if err != nil {
		return nil, err
	}
	if err := AddControllers(ctx, h, &o); err != nil {
		h.Conn.Close()
		return nil, err
	}
	if err := observeFlow(h); err != nil {
		h.Conn.Close()
		return nil, err
	}
	return h, nil
}
