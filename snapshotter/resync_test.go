package snapshotter

//lint:file-ignore SA1019 the snapshot client module (client/v8) generates no apply configurations, so its fake package has no NewClientset: NewSimpleClientset is its only fake.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/steps"
)

// countingQueue counts Adds.
type countingQueue struct {
	hub.Queue
	adds *atomic.Int32
}

func (q countingQueue) Add(key string) { q.adds.Add(1); q.Queue.Add(key) }

// --resync-period (csi-snapshotter's, 15m by default) has every content synced
// again without a change; 0 turns it off.
func TestResyncPeriod(t *testing.T) {
	t.Parallel() // it mostly waits
	if DefaultConfig().ResyncPeriod != 15*time.Minute {
		t.Errorf("default --resync-period %s, csi-snapshotter's is 15m", DefaultConfig().ResyncPeriod)
	}
	for _, tc := range []struct {
		resync  time.Duration
		wait    time.Duration
		atLeast int32
		atMost  int32
	}{
		// client-go's shortest handler resync is 1s: the add and at least one
		// resync in 2.2s. Without resync the add alone, where a 1s resync
		// would show twice.
		{resync: time.Second, wait: 2200 * time.Millisecond, atLeast: 2, atMost: 6},
		{resync: 0, wait: 2200 * time.Millisecond, atLeast: 1, atMost: 1},
	} {
		// Each case mostly waits: run them side by side.
		t.Run(tc.resync.String(), func(t *testing.T) {
			t.Parallel()
			resyncCase(t, tc.resync, tc.wait, tc.atLeast, tc.atMost)
		})
	}
}

// resyncCase runs a snapshotter with --resync-period=resync over one content
// for wait and checks how often the content was queued.
func resyncCase(t *testing.T, resync, wait time.Duration, atLeast, atMost int32) {
	content := &snapv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: "c1"},
		Spec: snapv1.VolumeSnapshotContentSpec{Driver: testDriver}}
	snap := snapfake.NewSimpleClientset(content)
	api := hub.NewSnapshotAPI(snap, time.Second)
	fakeInformer(api, &snapv1.VolumeSnapshotContent{})
	fakeInformer(api, &snapv1.VolumeSnapshotClass{})
	var adds atomic.Int32
	cfg := DefaultConfig()
	cfg.ResyncPeriod = resync
	_, err := New(t.Context(), Deps{
		DriverConn: hub.DriverConn{Driver: testDriver, CSI: &fakeCSI{}}, Kube: kubefake.NewClientset(), Snapshots: api,
		Events:     record.NewFakeRecorder(10),
		RetryStart: time.Second, RetryMax: 10 * time.Second,
		Work: hub.Work{Steps: steps.NewRecorder(10), Tuning: Defaults, NewQueue: func(string) hub.Queue {
			return countingQueue{workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()), &adds}
		}},
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	api.Informers.Start(ctx.Done())
	api.Informers.WaitForCacheSync(ctx.Done())
	time.Sleep(wait)
	cancel()
	api.Informers.Shutdown()
	if n := adds.Load(); n < atLeast || n > atMost {
		t.Errorf("--resync-period=%s: content queued %d times in %s, want %d..%d", resync, n, wait, atLeast, atMost)
	}
}
