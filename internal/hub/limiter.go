package hub

import (
	"context"
	"sync/atomic"
	"time"

	"k8s.io/client-go/util/flowcontrol"
)

// budget is the process's one --kube-api-qps token bucket, seen through two
// doors: controllers' requests go first, events take what is left. Events are
// sent asynchronously and may wait; a PV create must not wait behind them.
type budget struct {
	bucket  flowcontrol.RateLimiter
	waiting atomic.Int32 // controller requests waiting for a token
}

func newBudget(qps float32, burst int) *budget {
	return &budget{bucket: flowcontrol.NewTokenBucketRateLimiter(qps, burst)}
}

// work is the limiter for the controllers' client.
func (b *budget) work() flowcontrol.RateLimiter { return workLimiter{b} }

// background is the limiter for events: it takes a token only while no
// controller request is waiting for one.
func (b *budget) background() flowcontrol.RateLimiter { return backgroundLimiter{b} }

type workLimiter struct{ b *budget }

func (l workLimiter) TryAccept() bool { return l.b.bucket.TryAccept() }
func (l workLimiter) Accept() {
	l.b.waiting.Add(1)
	defer l.b.waiting.Add(-1)
	l.b.bucket.Accept()
}
func (l workLimiter) Stop()        {}
func (l workLimiter) QPS() float32 { return l.b.bucket.QPS() }
func (l workLimiter) Wait(ctx context.Context) error {
	l.b.waiting.Add(1)
	defer l.b.waiting.Add(-1)
	return l.b.bucket.Wait(ctx)
}

type backgroundLimiter struct{ b *budget }

func (l backgroundLimiter) TryAccept() bool { return l.b.waiting.Load() == 0 && l.b.bucket.TryAccept() }
func (l backgroundLimiter) Accept()         { _ = l.Wait(context.Background()) }
func (l backgroundLimiter) Stop()           {}
func (l backgroundLimiter) QPS() float32    { return l.b.bucket.QPS() }
func (l backgroundLimiter) Wait(ctx context.Context) error {
	// Poll at a fraction of the token interval: cheap, and a freed token is
	// taken soon after the controllers stop asking.
	poll := time.Duration(float64(time.Second) / float64(l.b.bucket.QPS()) / 4)
	for !l.TryAccept() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
	return nil
}
