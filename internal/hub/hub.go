package hub

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/steps"
)

// Controller is one job of the hub (provisioner, attacher, ...). Its constructor
// registers event handlers on the hub's shared informers; Run starts its workers
// once the caches are synced and returns when ctx is cancelled.
type Controller interface {
	Name() string
	Run(ctx context.Context)
}

// Hub holds what every controller shares.
type Hub struct {
	Opts       Options
	RestConfig *rest.Config
	Kube       kubernetes.Interface
	Informers  informers.SharedInformerFactory
	Conn       *csiconn.Conn
	Driver     string
	Steps      *steps.Recorder
	Events     record.EventRecorder
	// Metrics is the registry of csi-hub's own and the controllers' metrics,
	// served with csi_sidecar_operations_seconds and client-go's workqueue and
	// leader election metrics.
	Metrics *prometheus.Registry

	broadcaster  record.EventBroadcaster
	host         string
	leaderHealth *leaderelection.HealthzAdaptor
	recordersMu  sync.Mutex
	recorders    map[string]record.EventRecorder
	controllers  []Controller
	queuesMu     sync.Mutex
	queues       []Queue // every queue NewQueue made, for queuedItems
	synced       atomic.Bool
	leading      atomic.Bool
	identity     string
	snapshots    snapshotAPIEntry
	// leaderConfig is the client config before QPS limits and step recording.
	leaderConfig *rest.Config
}

// RestConfig builds the client configuration from kubeconfig, else
// $KUBECONFIG, else in-cluster (see Options.ClientConfig for --master).
func RestConfig(kubeconfig string) (*rest.Config, error) {
	return (&Options{Kubeconfig: kubeconfig}).ClientConfig()
}

// New connects to the driver (waiting while it is absent) and builds the shared
// clients. cfg is copied; QPS, burst and the step-recording transport are set on
// the copy so every request of the process shares one budget and one record.
func New(ctx context.Context, opts Options, cfg *rest.Config) (*Hub, error) {
	h := &Hub{Opts: opts, Steps: steps.NewRecorder(opts.StepBuffer),
		leaderHealth: leaderelection.NewLeaderHealthzAdaptor(leaderHealthTimeout)}
	conn, err := csiconn.Connect(ctx, opts.CSIAddress, csiconn.Options{
		CallTimeout:   opts.ProbeTimeout * 3,
		MigratedLabel: true, // the provisioner's, attacher's and resizer's metric
	}.With(h.Steps.UnaryClientInterceptor()))
	if err != nil {
		return nil, err
	}
	h.Conn, h.Driver = conn, conn.DriverName
	// csi-hub's own metrics are served beside csi_sidecar_operations_seconds.
	// Process and Go runtime metrics come from component-base's legacy
	// registry, served alongside (see MetricsHandler).
	h.Metrics = prometheus.NewRegistry()
	h.Metrics.MustRegister(h.Steps.Collector())

	cfg = rest.CopyConfig(cfg)
	h.leaderConfig = rest.CopyConfig(cfg) // lease renewals are not steps of any volume
	cfg.QPS, cfg.Burst = float32(opts.KubeAPIQPS), opts.KubeAPIBurst
	// One token bucket for every client built from this config (core, snapshot,
	// dynamic...): --kube-api-qps is the process's budget, not each client's.
	budget := newBudget(cfg.QPS, cfg.Burst)
	cfg.RateLimiter = budget.work()
	cfg.UserAgent = "csi-hub/" + h.Driver
	cfg.Wrap(h.Steps.WrapTransport)
	h.RestConfig = cfg
	if h.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	h.Informers = NewInformerFactory(h.Kube, opts.Resync)

	host, _ := os.Hostname()
	h.identity = fmt.Sprintf("%s_%d", host, time.Now().UnixNano())
	// The broadcaster lives until Run ends (which shuts it down), not as long as
	// ctx: callers may bound New's wait for the driver with a short context.
	h.broadcaster = record.NewBroadcaster(record.WithContext(context.WithoutCancel(ctx)))
	eventCfg := rest.CopyConfig(cfg)
	eventCfg.RateLimiter = budget.background() // events never delay a controller's request
	eventClient, err := kubernetes.NewForConfig(eventCfg)
	if err != nil {
		return nil, err
	}
	h.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: eventClient.CoreV1().Events("")})
	h.host = host
	h.Events = h.Recorder(h.Driver + "_csi-hub")
	return h, nil
}

// Recorder returns an event recorder whose events carry component as their
// source, so a controller's events have the source its sidecar gives them.
// One recorder per component, made on first use.
func (h *Hub) Recorder(component string) record.EventRecorder {
	if h.broadcaster == nil {
		return h.Events // a hub built by hand in a unit test
	}
	h.recordersMu.Lock()
	defer h.recordersMu.Unlock()
	if rec, ok := h.recorders[component]; ok {
		return rec
	}
	rec := h.Steps.EventRecorder(h.broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: component, Host: h.host}))
	if h.recorders == nil {
		h.recorders = map[string]record.EventRecorder{}
	}
	h.recorders[component] = rec
	return rec
}

// Add registers a controller; call before Run.
func (h *Hub) Add(c Controller) { h.controllers = append(h.controllers, c) }

// Controllers returns the registered controllers' names.
func (h *Hub) Controllers() []string {
	names := make([]string, 0, len(h.controllers))
	for _, c := range h.controllers {
		names = append(names, c.Name())
	}
	return names
}

// Run serves HTTP, takes the leader lease when enabled, then starts the shared
// informers and every controller. It returns when ctx ends (nil) or the lease is
// lost (an error, so the process exits non-zero and is restarted as a standby).
func (h *Hub) Run(ctx context.Context) error {
	defer h.broadcaster.Shutdown()
	stop, err := h.serveHTTP(ctx)
	if err != nil {
		return err
	}
	defer stop()
	if !h.Opts.LeaderElection {
		h.leading.Store(true)
		h.runControllers(ctx)
		return nil
	}
	return h.runWithLeaderElection(ctx)
}

func (h *Hub) runControllers(ctx context.Context) {
	klog.InfoS("Starting controllers", "driver", h.Driver, "controllers", h.Controllers())
	h.Informers.Start(ctx.Done())
	for typ, ok := range h.Informers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			klog.ErrorS(nil, "Informer cache did not sync", "type", typ)
			return
		}
	}
	h.synced.Store(true)
	releaseMemory()
	go h.releaseAfterInitialWork(ctx, 2*time.Minute)
	done := make(chan struct{}, len(h.controllers))
	for _, c := range h.controllers {
		go func() {
			defer func() { done <- struct{}{} }()
			c.Run(ctx)
		}()
	}
	for range h.controllers {
		<-done
	}
	h.Informers.Shutdown()
	klog.InfoS("Controllers stopped", "driver", h.Driver)
}
