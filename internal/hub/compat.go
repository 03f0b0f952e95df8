package hub

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/kubernetes-csi/csi-lib-utils/connection"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"

	_ "k8s.io/component-base/logs/json/register" // --logging-format=json, as the sidecars
)

// Compat are the sidecars' remaining standard flags: accepted under their
// names and defaults so an upstream Deployment's arguments work unchanged.
type Compat struct {
	Master               string
	MetricsAddress       string
	LeaderElectionLabels labelMap
	MaxGRPCLogLength     int
	EnablePprof          bool
	// HealthPort is livenessprobe's --health-port: /healthz on 0.0.0.0:<port>
	// when --http-endpoint is not set (node mode; controller mode only when given).
	HealthPort     string
	HealthPortSet  bool
	FeatureGateMap map[string]bool
	// FeatureGates holds every gate the six sidecars know plus the logging gates.
	FeatureGates featuregate.MutableVersionedFeatureGate
	Logging      *logsapi.LoggingConfiguration
}

// The sidecars' feature gates (pkg/features of each, current releases).
const (
	FeatureAnnotateFsResize            featuregate.Feature = "AnnotateFsResize"
	FeatureReleaseLeaderElectionOnExit featuregate.Feature = "ReleaseLeaderElectionOnExit"
)

var sidecarGates = map[featuregate.Feature]featuregate.FeatureSpec{
	FeatureAnnotateFsResize:            {Default: true, PreRelease: featuregate.Beta}, // external-resizer
	"VolumeAttributesClass":            {Default: true, PreRelease: featuregate.GA},   // provisioner, resizer
	FeatureReleaseLeaderElectionOnExit: {Default: false, PreRelease: featuregate.Alpha},
	"Topology":                         {Default: true, PreRelease: featuregate.GA},     // provisioner
	"CrossNamespaceVolumeDataSource":   {Default: false, PreRelease: featuregate.Alpha}, // provisioner
	"MutableCSINodeAllocatableCount":   {Default: true, PreRelease: featuregate.GA},     // attacher
	"VolumeGroupSnapshot":              {Default: true, PreRelease: featuregate.GA},     // snapshotter
}

func (c *Compat) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Master, "master", "", "Master URL to build a client config from (the provisioner's and resizer's --master); with --kubeconfig as clientcmd combines them.")
	fs.StringVar(&c.MetricsAddress, "metrics-address", "", "(deprecated) Address of the HTTP server for metrics; use --http-endpoint. Only one of the two can be set.")
	c.LeaderElectionLabels = labelMap{}
	fs.Var(&c.LeaderElectionLabels, "leader-election-labels", "Labels to add to the Lease while this replica leads, as key:value,key2:value2.")
	c.HealthPort = "9808"
	fs.StringVar(&c.HealthPort, "health-port", c.HealthPort, "TCP port of /healthz, the driver's Probe (livenessprobe's --health-port), served beside --http-endpoint; 0 disables it.")
	fs.IntVar(&c.MaxGRPCLogLength, "max-grpc-log-length", -1, "Maximum characters logged of every gRPC request and response (-v=5); -1 means no limit.")
	fs.BoolVar(&c.EnablePprof, "enable-pprof", false, "Serve pprof under /debug/pprof/ on --http-endpoint.")
	fs.BoolFunc("automaxprocs", "Accepted for the sidecars' compatibility: Go's runtime already sizes GOMAXPROCS to the container's CPU quota.", func(string) error { return nil })
	c.FeatureGates = featuregate.NewFeatureGate()
	if err := logsapi.AddFeatureGates(c.FeatureGates); err != nil {
		panic(err)
	}
	if err := c.FeatureGates.Add(sidecarGates); err != nil {
		panic(err)
	}
	c.FeatureGateMap = map[string]bool{}
	fs.Var(gateMap(c.FeatureGateMap), "feature-gates", "A set of key=value pairs that describe feature gates, as the sidecars have them. Options are:\n"+
		strings.Join(c.FeatureGates.KnownFeatures(), "\n"))
	c.Logging = logsapi.NewLoggingConfiguration()
	logsapi.AddGoFlags(c.Logging, fs)
}

// Apply validates the compat flags and applies the feature gates, the logging
// configuration (--logging-format, -v, ...) and --max-grpc-log-length. Call
// once after parsing, before anything logs.
func (o *Options) Apply() error {
	c := &o.Compat
	if c.MetricsAddress != "" && o.HTTPEndpoint != "" {
		return errors.New("only one of --metrics-address and --http-endpoint can be set")
	}
	if c.MetricsAddress != "" {
		o.HTTPEndpoint = c.MetricsAddress
	}
	if err := o.ApplyGates(); err != nil {
		return err
	}
	// Tests run the command more than once in a process: the same
	// configuration again is fine, a different one an error.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
	if err := logsapi.ValidateAndApply(c.Logging, c.FeatureGates); err != nil {
		return fmt.Errorf("logging configuration: %w", err)
	}
	connection.SetMaxGRPCLogLength(c.MaxGRPCLogLength)
	return nil
}

// ApplyGates applies --feature-gates (part of Apply, without the logging setup).
func (o *Options) ApplyGates() error {
	if err := o.Compat.FeatureGates.SetFromMap(o.Compat.FeatureGateMap); err != nil {
		return fmt.Errorf("--feature-gates: %w", err)
	}
	return nil
}

// Enabled reports a sidecar feature gate (defaults before Apply).
func (o *Options) Enabled(f featuregate.Feature) bool {
	if o.Compat.FeatureGates == nil {
		return sidecarGates[f].Default
	}
	return o.Compat.FeatureGates.Enabled(f)
}

// ClientConfig builds the client configuration as the sidecars do: from
// --kubeconfig (with --master), else from $KUBECONFIG, else in-cluster.
func (o *Options) ClientConfig() (*rest.Config, error) {
	kubeconfig := o.Kubeconfig
	if kubeconfig == "" {
		if env := os.Getenv("KUBECONFIG"); env != "" {
			klog.InfoS("Using the KUBECONFIG environment variable", "path", env)
			kubeconfig = env
		}
	}
	if kubeconfig == "" && o.Compat.Master == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags(o.Compat.Master, kubeconfig)
}

// labelMap is --leader-election-labels (csi-lib-utils standardflags' format).
type labelMap map[string]string

func (m *labelMap) String() string {
	if m == nil || len(*m) == 0 {
		return ""
	}
	var parts []string
	for k, v := range *m {
		parts = append(parts, k+":"+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (m *labelMap) Set(value string) error {
	if *m == nil {
		*m = labelMap{}
	}
	if value == "" {
		return nil
	}
	for _, item := range strings.Split(value, ",") {
		kv := strings.Split(item, ":")
		if len(kv) != 2 {
			return fmt.Errorf("malformed item in list of labels: %s", item)
		}
		(*m)[kv[0]] = kv[1]
	}
	return nil
}

// gateMap is --feature-gates: key=bool pairs, comma-separated, as
// component-base's MapStringBool parses them.
type gateMap map[string]bool

func (m gateMap) String() string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%t", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (m gateMap) Set(value string) error {
	for _, s := range strings.Split(value, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("missing bool value for %s", s)
		}
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("invalid value of %s: %s, err: %v", k, v, err)
		}
		m[strings.TrimSpace(k)] = b
	}
	return nil
}

// AddKlogFlags registers klog's own flags except -v and -vmodule, which the
// logging configuration (--logging-format and friends) owns, as in the sidecars.
func AddKlogFlags(fs *flag.FlagSet) {
	kfs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(kfs)
	kfs.VisitAll(func(f *flag.Flag) {
		if f.Name != "v" && f.Name != "vmodule" {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
}
