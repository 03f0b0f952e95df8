package hub

import (
	"strconv"
	"testing"
	"time"
)

// TestPacedQueueBurst: a burst of adds beyond the high-water mark waits in
// the overflow list (the workqueue itself never holds more than the mark),
// Len counts it, and every key is handed out once, in order.
func TestPacedQueueBurst(t *testing.T) {
	h := &Hub{}
	q := h.NewQueue("burst")
	defer q.ShutDown()
	inner := q.(*pacedQueue).Queue
	const n = 5 * queueHighWater
	for i := range n {
		q.Add(strconv.Itoa(i))
	}
	if got := q.Len(); got != n {
		t.Fatalf("Len() = %d after %d adds, want %d", got, n, n)
	}
	if got := inner.Len(); got > queueHighWater {
		t.Fatalf("the workqueue holds %d keys, want at most %d", got, queueHighWater)
	}
	if got := h.queuedItems(); got != n {
		t.Errorf("queuedItems() = %d, want %d", got, n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := range n {
		if inner.Len() > queueHighWater {
			t.Fatalf("the workqueue grew to %d keys", inner.Len())
		}
		done := make(chan string, 1)
		go func() { key, _ := q.Get(); done <- key }()
		select {
		case key := <-done:
			if key != strconv.Itoa(i) {
				t.Fatalf("key %d handed out as %q: order lost", i, key)
			}
			q.Done(key)
		case <-time.After(time.Until(deadline)):
			t.Fatalf("key %d never handed out (Len %d)", i, q.Len())
		}
	}
	if got := q.Len(); got != 0 {
		t.Errorf("Len() = %d after all keys were processed", got)
	}
}

// TestPacedQueueShutDown: keys still in the overflow list are dropped when
// the queue shuts down, and the pump stops.
func TestPacedQueueShutDown(t *testing.T) {
	q := (&Hub{}).NewQueue("shutdown").(*pacedQueue)
	for i := range 2 * queueHighWater {
		q.Add(strconv.Itoa(i))
	}
	q.ShutDown()
	deadline := time.Now().Add(5 * time.Second)
	for {
		q.mu.Lock()
		pumping, left := q.pumping, len(q.overflow)
		q.mu.Unlock()
		if !pumping && left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after ShutDown the pump still runs (%d keys in overflow)", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
