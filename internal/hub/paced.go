package hub

import (
	"sync"
	"time"
)

// queueHighWater is how many keys a queue holds before further adds wait in
// its overflow list.
const queueHighWater = 512

// pumpInterval is how often a pacedQueue moves overflow keys into its queue.
var pumpInterval = 5 * time.Millisecond

// pacedQueue is a workqueue whose Add holds keys beyond queueHighWater in a
// plain list and feeds them in as the workers make room. Why: a workqueue
// keeps three maps of its keys (dirty, processing, and the metrics' add
// times), and Go maps never shrink. The start-up burst, one add per cached
// object (10,000 volumes: 10,000 keys at once in each of several queues),
// would otherwise leave each queue holding maps sized for the whole cluster
// for the rest of the process's life (BenchmarkScale: about 9 MiB at 10,000
// volumes). The list is freed once drained. Keys keep their order; a key
// already queued may be processed once more, which every sync allows.
// Retries (AddRateLimited, AddAfter) go to the queue directly. The
// workqueue_depth metric counts the workqueue only, so in a burst it shows at
// most queueHighWater while more keys wait (Len counts both).
type pacedQueue struct {
	Queue
	mu       sync.Mutex
	overflow []string
	pumping  bool
}

func (q *pacedQueue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.overflow) == 0 && q.Queue.Len() < queueHighWater {
		q.Queue.Add(key)
		return
	}
	q.overflow = append(q.overflow, key)
	if !q.pumping {
		q.pumping = true
		go q.pump()
	}
}

// Len counts the keys waiting in the overflow list too.
func (q *pacedQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.Queue.Len() + len(q.overflow)
}

func (q *pacedQueue) pump() {
	for {
		q.mu.Lock()
		if q.Queue.ShuttingDown() {
			q.overflow, q.pumping = nil, false
			q.mu.Unlock()
			return
		}
		n := min(queueHighWater-q.Queue.Len(), len(q.overflow))
		for _, key := range q.overflow[:max(n, 0)] {
			q.Queue.Add(key)
		}
		q.overflow = q.overflow[max(n, 0):]
		if len(q.overflow) == 0 {
			q.overflow, q.pumping = nil, false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		time.Sleep(pumpInterval)
	}
}
