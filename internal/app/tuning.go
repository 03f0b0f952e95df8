package app

import (
	"flag"
	"fmt"
	"strings"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// tuningSpec describes a controller's own --<name>-worker-threads and
// --<name>-timeout. Both default to 0: unset, the global --worker-threads /
// --timeout applies, else the sidecar's default (hub.Options.Tune). The flags,
// their help text, the help of the global flags and the README's table
// (TuningTable) are all made from these specs.
type tuningSpec struct {
	sidecar string // the sidecar whose job the controller does
	// workersFlag is the sidecar's name for its workers flag; "" is
	// "worker-threads" (external-resizer's is "workers").
	workersFlag string
	defaults    hub.Tuning
	workers     string // what the workers are
	timeout     string // the calls the timeout bounds
}

func (t tuningSpec) sidecarWorkersFlag() string {
	if t.workersFlag == "" {
		return "worker-threads"
	}
	return t.workersFlag
}

// addTuningFlags registers every controller's --<name>-worker-threads and
// --<name>-timeout, and names each controller in the usage of the global
// --controllers, --worker-threads and --timeout when fs has them.
func addTuningFlags(fs *flag.FlagSet, o *ControllerOptions) {
	var workers, timeouts []string
	for _, s := range controllerSpecs {
		t := s.tuning
		own := s.own(o)
		fs.IntVar(&own.WorkerThreads, s.name+"-worker-threads", own.WorkerThreads, fmt.Sprintf("%s (%s's --%s); when unset, --worker-threads or %d.",
			t.workers, t.sidecar, t.sidecarWorkersFlag(), t.defaults.Workers))
		fs.DurationVar(&own.Timeout, s.name+"-timeout", own.Timeout, fmt.Sprintf("Timeout of %s (%s's --timeout); when unset, --timeout or %s.",
			t.timeout, t.sidecar, t.defaults.Timeout))
		workers = append(workers, fmt.Sprintf("%s %d", s.name, t.defaults.Workers))
		timeouts = append(timeouts, fmt.Sprintf("%s %s", s.name, t.defaults.Timeout))
	}
	usage := map[string]string{
		"controllers": "Comma-separated controllers to run (" + strings.Join(ControllerNames(), ",") + "); default: all that the driver's capabilities call for.",
		"worker-threads": "Workers of every controller not given its own --<controller>-worker-threads; when unset, each uses its sidecar's default (" +
			strings.Join(workers, ", ") + ").",
		"timeout": "Timeout of the CSI calls of every controller not given its own --<controller>-timeout; when unset, each uses its sidecar's default (" +
			strings.Join(timeouts, ", ") + ").",
	}
	for name, u := range usage {
		if f := fs.Lookup(name); f != nil {
			f.Usage = u
		}
	}
}

// validateTuning refuses a negative --<controller>-worker-threads or
// --<controller>-timeout, naming the flag (0 is unset).
func validateTuning(o *ControllerOptions) error {
	for _, s := range controllerSpecs {
		own := s.own(o)
		if own.WorkerThreads < 0 {
			return fmt.Errorf("--%s-worker-threads must not be negative, got %d", s.name, own.WorkerThreads)
		}
		if own.Timeout < 0 {
			return fmt.Errorf("--%s-timeout must not be negative, got %s", s.name, own.Timeout)
		}
	}
	return nil
}

// TuningTable is the README's table of the per-controller settings, made from
// the registry (TestREADMETuningTable keeps the README's copy identical).
func TuningTable() string {
	var b strings.Builder
	b.WriteString("| controller (sidecar) | workers: `--<controller>-worker-threads`, else `--worker-threads`, else | timeout: `--<controller>-timeout`, else `--timeout`, else |\n")
	b.WriteString("| --- | --- | --- |\n")
	for _, s := range controllerSpecs {
		t := s.tuning
		fmt.Fprintf(&b, "| `%s` (%s) | %d (%s) | %s (%s) |\n",
			s.name, t.sidecar, t.defaults.Workers, t.workers, t.defaults.Timeout, t.timeout)
	}
	return b.String()
}
