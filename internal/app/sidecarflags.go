package app

import (
	"flag"
	"strconv"
	"time"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/resizer"
)

// AddSidecarFlags registers the sidecars' flags whose csi-hub name differs,
// under the sidecar's name as well, and sets the defaults the sidecars have
// (external-resizer: --workers, --resize-timeout, --modify-timeout; the
// AnnotateFsResize gate on by default). Call after ControllerOptions.AddFlags.
func AddSidecarFlags(fs *flag.FlagSet, o *ControllerOptions) {
	fs.Var(&defaultedInt{p: &o.Resizer.WorkerThreads, def: resizer.DefaultWorkerThreads}, "workers",
		"external-resizer's --workers: the resizer's workers per queue (same as --resizer-worker-threads).")
	for _, name := range []string{"resize-timeout", "modify-timeout"} {
		fs.Var(&defaultedDuration{p: &o.Resizer.Timeout, def: resizer.DefaultTimeout}, name,
			"external-resizer's --"+name+": timeout of the resizer's CSI calls (csi-hub has one for expand and modify, --resizer-timeout).")
	}
	// external-resizer's AnnotateFsResize gate is beta, on by default.
	if f := fs.Lookup("resizer-annotate-fs-resize"); f != nil {
		o.Resizer.AnnotateFsResize = true
		f.DefValue = "true"
		f.Value = &markedBool{Value: f.Value, set: &o.annotateSet}
	}
}

// ApplySidecarGates gives the controllers what --feature-gates says, unless a
// controller flag of csi-hub's own said otherwise. Call after Options.Apply.
func ApplySidecarGates(common hub.Options, o *ControllerOptions) {
	if _, given := common.Compat.FeatureGateMap[string(hub.FeatureAnnotateFsResize)]; given && !o.annotateSet {
		o.Resizer.AnnotateFsResize = common.Enabled(hub.FeatureAnnotateFsResize)
	}
}

// defaultedInt writes only when given, so an unset flag leaves csi-hub's
// "0: --worker-threads, else the sidecar default" in place; -h shows def.
type defaultedInt struct {
	p   *int
	def int
}

func (d *defaultedInt) String() string {
	if d == nil || d.p == nil || *d.p == 0 {
		return strconv.Itoa(d.defOrZero())
	}
	return strconv.Itoa(*d.p)
}

func (d *defaultedInt) defOrZero() int {
	if d == nil {
		return 0
	}
	return d.def
}

func (d *defaultedInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return err
	}
	*d.p = n
	return nil
}

type defaultedDuration struct {
	p   *time.Duration
	def time.Duration
}

func (d *defaultedDuration) String() string {
	if d == nil {
		return "0s"
	}
	if d.p == nil || *d.p == 0 {
		return d.def.String()
	}
	return d.p.String()
}

func (d *defaultedDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d.p = v
	return nil
}

// markedBool records that a bool flag was given.
type markedBool struct {
	flag.Value
	set *bool
}

func (m *markedBool) Set(s string) error {
	*m.set = true
	return m.Value.Set(s)
}

func (m *markedBool) String() string {
	if m == nil || m.Value == nil {
		return "false"
	}
	return m.Value.String()
}

func (m *markedBool) IsBoolFlag() bool { return true }
