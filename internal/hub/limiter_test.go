package hub

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Events wait while controllers want tokens, then get what is left.
func TestBudgetPutsWorkBeforeEvents(t *testing.T) {
	b := newBudget(50, 1)
	b.bucket.Accept() // empty the burst so every request below has to wait
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	start := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		time.Sleep(5 * time.Millisecond) // the event asks just after the work starts queueing
		if err := b.background().Wait(context.Background()); err != nil {
			t.Error(err)
		}
		mu.Lock()
		order = append(order, "event")
		mu.Unlock()
	}()
	// Three workers each make a stream of requests, as a busy controller does: a
	// plain shared bucket (first come, first served) would slot the event in
	// among them.
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range 8 {
				if err := b.work().Wait(context.Background()); err != nil {
					t.Error(err)
				}
				mu.Lock()
				order = append(order, "work")
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if order[len(order)-1] != "event" {
		t.Fatalf("order %v: the event got a token while controller requests were waiting", order)
	}
	// With nobody else waiting, an event is served at once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.background().Wait(ctx); err != nil {
		t.Fatalf("idle budget refused an event: %v", err)
	}
}
