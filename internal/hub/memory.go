package hub

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"k8s.io/klog/v2"
)

// DefaultGCPercent is csi-hub's garbage collection target when GOGC is not
// set. Almost all of csi-hub's heap is the informer caches, which live as long
// as the process, and the garbage it makes per second is small (its API
// writes are rate-limited). Go's default of 100 lets the heap grow to twice
// that long-lived part before a collection; 50 lets it grow by half, for a
// little more collector CPU (BenchmarkScale prints both idle CPU and RSS).
const DefaultGCPercent = 50

// SetGCPercentDefault applies DefaultGCPercent unless the GOGC environment
// variable says otherwise (then Go's runtime already obeys it). It returns
// the percentage in effect, -1 when GOGC is set.
func SetGCPercentDefault() int {
	if os.Getenv("GOGC") != "" {
		return -1
	}
	debug.SetGCPercent(DefaultGCPercent)
	return DefaultGCPercent
}

// SetMemProfiling turns the runtime's heap profiling off unless pprof is
// served (--enable-pprof), as nobody could read the profile. Go samples an
// allocation every 512 KiB by default: it keeps a record per sampled call
// stack for the life of the process (MemStats.BuckHashSys, 1.5 MiB at 10,000
// volumes) and unwinds each sampled stack, which pages in the binary's pc
// tables. BenchmarkScale at 10,000 volumes: RSS 99.9-104.2 MiB with it, 89.2
// and 90.2 without. Call once, first thing, before the informers allocate.
func SetMemProfiling(pprof bool) {
	if !pprof {
		runtime.MemProfileRate = 0
	}
}

// releaseMemory returns the freed heap to the OS (a collection first). The
// initial lists were decoded whole, a page of objects at a time, and every
// controller then handled an add event per object: that garbage would
// otherwise stay resident until the heap grew into it again.
var releaseMemory = debug.FreeOSMemory

// initialDrainPoll is how often releaseAfterInitialWork looks at the queues.
var initialDrainPoll = 250 * time.Millisecond

// releaseAfterInitialWork releases memory once more when every controller's
// queue has been empty for two polls in a row after the start (the first add
// event of every cached object handled), or after limit at the latest.
func (h *Hub) releaseAfterInitialWork(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	empty := 0
	for empty < 2 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(initialDrainPoll):
		}
		if h.queuedItems() == 0 {
			empty++
		} else {
			empty = 0
		}
	}
	releaseMemory()
	klog.FromContext(ctx).V(2).Info("Initial work done, memory returned to the OS", "driver", h.Driver)
}

// queuedItems is the number of keys waiting in every queue made by NewQueue.
func (h *Hub) queuedItems() int {
	h.queuesMu.Lock()
	defer h.queuesMu.Unlock()
	n := 0
	for _, q := range h.queues {
		n += q.Len()
	}
	return n
}
