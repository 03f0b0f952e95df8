package healthmonitor

import (
	"flag"
	"time"

	"github.com/csi-hub/csi-hub/internal/cfgflag"
	"github.com/csi-hub/csi-hub/internal/hub"
)

// Defaults of external-health-monitor-controller.
const (
	DefaultMonitorInterval     = time.Minute
	DefaultListVolumesInterval = 5 * time.Minute
	DefaultListAddInterval     = 5 * time.Minute
)

// Defaults are the sidecar's worker count and CSI call timeout, used when
// neither --health-monitor-worker-threads / --health-monitor-timeout nor the global flags are given
// (hub.Options.Tune).
var Defaults = hub.Tuning{Workers: 10, Timeout: 15 * time.Second}

// Config holds the health monitor's flags (the sidecar's names and defaults).
type Config struct {
	// MonitorInterval: how often each volume is checked one by one (drivers
	// without a list call).
	MonitorInterval time.Duration
	// ListVolumesInterval: how often the whole list is read (drivers with
	// ListVolumes / ControllerListVolumeHealth).
	ListVolumesInterval time.Duration
	// Tuning: concurrent per-volume calls, and the timeout of each CSI call.
	cfgflag.Tuning
	// EnableNodeWatcher: NodeFailed / NodeRecovered events (nodes.go).
	EnableNodeWatcher bool
	// NodeListAddInterval: how often every node is examined again.
	NodeListAddInterval time.Duration
	// VolumeListAddInterval is accepted for the sidecar's flag; csi-hub
	// checks every volume each interval without a separate re-listing.
	VolumeListAddInterval time.Duration
}

// DefaultConfig returns the sidecar's defaults.
func DefaultConfig() (c Config) { cfgflag.Reset(c.flags()...); return c }

// AddFlags registers the health monitor's flags; --health-monitor-timeout and
// --health-monitor-worker-threads come from internal/app's controller registry.
func (c *Config) AddFlags(fs *flag.FlagSet) { cfgflag.Add(fs, c.flags()...) }

// validate reports the first bad setting, naming its flag.
func (c Config) validate() error { return cfgflag.Check(c.flags()...) }

// flags is the health monitor's flag table: names, defaults, help and checks.
func (c *Config) flags() []cfgflag.Flag {
	positive := cfgflag.Positive[time.Duration]()
	return []cfgflag.Flag{
		cfgflag.Duration(&c.MonitorInterval, "monitor-interval", DefaultMonitorInterval,
			"Interval for controller to check volumes health condition (volume by volume).", positive),
		cfgflag.Duration(&c.ListVolumesInterval, "list-volumes-interval", DefaultListVolumesInterval,
			"Time interval for calling ListVolumes RPC to check volumes' health condition.", positive),
		cfgflag.Bool(&c.EnableNodeWatcher, "enable-node-watcher", false,
			"Indicates whether the node watcher is enabled or not (NodeFailed/NodeRecovered events on the claims of Pods on failed nodes)."),
		cfgflag.Duration(&c.NodeListAddInterval, "node-list-add-interval", DefaultListAddInterval,
			"Time interval for listing nodes and add them to queue.", positive),
		cfgflag.Duration(&c.VolumeListAddInterval, "volume-list-add-interval", DefaultListAddInterval,
			"Accepted for compatibility with external-health-monitor; csi-hub checks every volume each --monitor-interval."),
	}
}
