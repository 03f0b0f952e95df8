package app

import (
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/csi-hub/csi-hub/internal/cfgflag"
	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/resizer"
)

// AddSidecarFlags registers the sidecars' flags whose csi-hub name differs,
// under the sidecar's name as well, and sets the defaults the sidecars have
// (external-resizer: --workers, --resize-timeout, --modify-timeout; the
// AnnotateFsResize gate on by default). Call after ControllerOptions.AddFlags.
func AddSidecarFlags(fs *flag.FlagSet, o *ControllerOptions) {
	fs.Var(&defaulted[int]{p: &o.Resizer.WorkerThreads, def: resizer.Defaults.Workers, parse: strconv.Atoi}, "workers",
		"external-resizer's --workers: the resizer's workers per queue (same as --resizer-worker-threads).")
	for _, name := range []string{"resize-timeout", "modify-timeout"} {
		fs.Var(&defaulted[time.Duration]{p: &o.Resizer.Timeout, def: resizer.Defaults.Timeout, parse: time.ParseDuration}, name,
			"external-resizer's --"+name+": timeout of the resizer's CSI calls (csi-hub has one for expand and modify, --resizer-timeout).")
	}
	// external-resizer's AnnotateFsResize gate is beta, on by default.
	if f := fs.Lookup("resizer-annotate-fs-resize"); f != nil {
		o.Resizer.AnnotateFsResize = true
		f.DefValue = "true"
		f.Value = cfgflag.Marked[bool](f.Value, &o.annotateSet)
	}
}

// ApplySidecarGates gives the controllers what --feature-gates says, unless a
// controller flag of csi-hub's own said otherwise. Call after Options.Apply.
func ApplySidecarGates(common hub.Options, o *ControllerOptions) {
	if _, given := common.Compat.FeatureGateMap[string(hub.FeatureAnnotateFsResize)]; given && !o.annotateSet {
		o.Resizer.AnnotateFsResize = common.Enabled(hub.FeatureAnnotateFsResize)
	}
}

// defaulted writes only when given, so an unset flag leaves csi-hub's
// "0: --worker-threads / --timeout, else the sidecar default" in place; -h
// shows def.
type defaulted[T int | time.Duration] struct {
	p     *T
	def   T
	parse func(string) (T, error)
}

// String works on a zero defaulted, which flag.PrintDefaults builds.
func (d *defaulted[T]) String() string {
	switch {
	case d == nil:
		var zero T
		return fmt.Sprint(zero)
	case d.p == nil || *d.p == 0:
		return fmt.Sprint(d.def)
	}
	return fmt.Sprint(*d.p)
}

func (d *defaulted[T]) Set(s string) error {
	v, err := d.parse(s)
	if err != nil {
		return err
	}
	*d.p = v
	return nil
}
