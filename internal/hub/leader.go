package hub

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// leaderHealthTimeout is how long past its lease a leader may go unrenewed
// before /healthz/leader-election fails (csi-lib-utils' DefaultHealthCheckTimeout).
const leaderHealthTimeout = 20 * time.Second

// ErrLostLease is returned by Run when another replica took over.
var ErrLostLease = errors.New("lost the leader election lease")

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// LeaseName is the one Lease that all of csi-hub's controllers for a driver share.
func LeaseName(driver string) string {
	return "csi-hub-" + strings.Trim(notDNS.ReplaceAllString(strings.ToLower(driver), "-"), "-")
}

func (h *Hub) runWithLeaderElection(ctx context.Context) error {
	ns := h.Opts.LeaderElectionNamespace
	if ns == "" {
		ns = podNamespace()
	}
	// Its own client, as the sidecars do: when the controllers are throttled
	// the lease renewals must still get through.
	leClient, err := kubernetes.NewForConfig(h.leaderConfig)
	if err != nil {
		return err
	}
	lock, err := resourcelock.NewWithLabels(resourcelock.LeasesResourceLock, ns, LeaseName(h.Driver),
		leClient.CoreV1(), leClient.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: h.identity},
		h.Opts.Compat.LeaderElectionLabels)
	if err != nil {
		return err
	}
	lost := false
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   h.Opts.LeaderElectionLeaseDuration,
		RenewDeadline:   h.Opts.LeaderElectionRenewDeadline,
		RetryPeriod:     h.Opts.LeaderElectionRetryPeriod,
		ReleaseOnCancel: true,
		Name:            LeaseName(h.Driver),
		WatchDog:        h.leaderHealth,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				defer close(stopped)
				klog.InfoS("Became leader", "lease", ns+"/"+LeaseName(h.Driver), "identity", h.identity)
				h.leading.Store(true)
				h.runControllers(ctx)
			},
			OnStoppedLeading: func() {
				h.leading.Store(false)
				if runCtx.Err() == nil {
					lost = true
					klog.ErrorS(nil, "Lost the leader election lease; stopping all controllers")
				}
				cancel()
			},
			OnNewLeader: func(id string) { klog.V(2).InfoS("Leader", "identity", id) },
		},
	})
	if err != nil {
		return err
	}
	le.Run(runCtx)
	if h.leading.Load() || lost {
		<-stopped // controllers stop before we report, so no work runs without the lease
	}
	if lost {
		return ErrLostLease
	}
	return nil
}

func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return "default"
}
