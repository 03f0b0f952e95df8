package hub

import (
	"context"
	"errors"
	"time"

	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/steps"
)

// Queue is a workqueue of object keys.
type Queue = workqueue.TypedRateLimitingInterface[string]

// NewQueue returns a queue with the sidecars' retry policy: per-item exponential
// backoff from --retry-interval-start to --retry-interval-max, so a broken object
// is retried ever more slowly instead of in a storm. A burst of adds is paced
// (pacedQueue) so the queue's maps stay small.
func (h *Hub) NewQueue(name string) Queue {
	rl := workqueue.NewTypedItemExponentialFailureRateLimiter[string](h.Opts.RetryIntervalStart, h.Opts.RetryIntervalMax)
	q := &pacedQueue{Queue: workqueue.NewTypedRateLimitingQueueWithConfig(rl, workqueue.TypedRateLimitingQueueConfig[string]{Name: name})}
	h.queuesMu.Lock()
	h.queues = append(h.queues, q)
	h.queuesMu.Unlock()
	return q
}

type requeueAfter struct{ after time.Duration }

func (r requeueAfter) Error() string { return "requeue after " + r.after.String() }

// RequeueAfter asks for key to be processed again after d without counting as a
// failure (e.g. polling a snapshot until it is ready).
func RequeueAfter(d time.Duration) error { return requeueAfter{d} }

// SyncFunc reconciles one key. It must be idempotent: it may run again for the
// same key at any time, including after a restart.
type SyncFunc func(ctx context.Context, key string) error

// RunWorkers processes q with n workers until ctx ends, then shuts q down.
// kind names the objects in the queue for the step record ("PersistentVolumeClaim").
func RunWorkers(ctx context.Context, controller, kind string, q Queue, n int, sync SyncFunc) {
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	done := make(chan struct{})
	for range n {
		go func() {
			defer func() { done <- struct{}{} }()
			for processNext(ctx, controller, kind, q, sync) {
			}
		}()
	}
	for range n {
		<-done
	}
}

func processNext(ctx context.Context, controller, kind string, q Queue, sync SyncFunc) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	// Contextual logging: every line logged through the context (gRPC calls
	// included) names the controller and the object.
	logger := klog.FromContext(ctx).WithValues("controller", controller, "object", kind+" "+key)
	ctx = klog.NewContext(ctx, logger)
	err := sync(steps.WithObject(ctx, controller, kind+" "+key), key)
	var ra requeueAfter
	switch {
	case err == nil:
		q.Forget(key)
	case errors.As(err, &ra):
		q.Forget(key)
		q.AddAfter(key, ra.after)
	case ctx.Err() != nil:
		// Shutting down: the next leader or run picks the key up again.
	default:
		logger.Error(err, "Sync failed; will retry with backoff", "retries", q.NumRequeues(key))
		q.AddRateLimited(key)
	}
	return true
}
