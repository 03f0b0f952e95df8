package hub

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/testutil"
)

// The shared worker gives each sync a logger naming the controller and the
// object: what a sync logs through klog.FromContext(ctx), and the worker's
// own "Sync failed" line, carry both, for the object being synced and no
// other. The failed key is retried with backoff; the good one is not.
func TestWorkerLogsCarryControllerAndObject(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx, logs := testutil.LogContext(t, ctx)
	h := &Hub{Opts: Options{RetryIntervalStart: 5 * time.Millisecond, RetryIntervalMax: 20 * time.Millisecond}}
	q := h.NewQueue("worker-log-test")

	var mu sync.Mutex
	calls := map[string]int{}
	syncFn := func(ctx context.Context, key string) error {
		mu.Lock()
		calls[key]++
		n := calls[key]
		mu.Unlock()
		klog.FromContext(ctx).Info("Inside sync", "key", key, "attempt", n)
		if key == "ns/bad" {
			if n == 3 {
				cancel() // three failures are enough; stop the workers
			}
			return errors.New("driver says no")
		}
		return nil
	}
	q.Add("ns/good")
	q.Add("ns/bad")
	done := make(chan struct{})
	go func() {
		RunWorkers(ctx, "unit-controller", "PersistentVolumeClaim", q, 2, syncFn)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("RunWorkers did not return after its context ended")
	}

	mu.Lock()
	if calls["ns/good"] != 1 || calls["ns/bad"] < 3 {
		t.Errorf("sync calls = %v, want ns/good once and ns/bad retried (3 times)", calls)
	}
	mu.Unlock()

	failed := logs.Find("Sync failed")
	if len(failed) < 2 {
		t.Fatalf("%d 'Sync failed' lines, want one per failed attempt (at least 2; the 3rd may race with shutdown):\n%s", len(failed), logs)
	}
	for _, e := range failed {
		if e.Type != "ERROR" || e.Err == nil || e.Err.Error() != "driver says no" {
			t.Errorf("failed sync line %+v: want an error line with the sync's error", e)
		}
		if !testutil.HasValue(e, "controller", "unit-controller") || !testutil.HasValue(e, "object", "PersistentVolumeClaim ns/bad") {
			t.Errorf("failed sync line lacks controller/object: %v %v", e.WithKVList, e.ParameterKVList)
		}
		if _, ok := testutil.Value(e, "retries"); !ok {
			t.Errorf("failed sync line lacks the retry count: %v", e.ParameterKVList)
		}
	}
	inside := logs.Find("Inside sync")
	if len(inside) < 4 {
		t.Fatalf("%d lines logged from inside the syncs, want >= 4:\n%s", len(inside), logs)
	}
	for _, e := range inside {
		key, _ := testutil.Value(e, "key")
		if !testutil.HasValue(e, "object", "PersistentVolumeClaim "+key.(string)) || !testutil.HasValue(e, "controller", "unit-controller") {
			t.Errorf("line logged inside the sync of %v does not name controller and object: %v", key, e.WithKVList)
		}
		if a, _ := testutil.Value(e, "attempt"); key == "ns/good" && a != 1 {
			t.Errorf("ns/good logged attempt %v: it succeeded and must not be retried", a)
		}
	}
}
