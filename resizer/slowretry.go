package resizer

import (
	"context"
	"sync"
	"time"

	"github.com/kubernetes-csi/csi-lib-utils/slowset"
)

// slowRetry holds PVCs whose last request the driver called infeasible: the
// same request is retried only once per interval (--retry-interval-max),
// while a changed request goes ahead at once.
type slowRetry struct {
	set *slowset.SlowSet
	// known are keys whose infeasible answer this process has seen; a PVC
	// found infeasible without being known (after a restart) is adopted once,
	// and an expired entry of a known key means "retry now", not "start again".
	known sync.Map
}

func newSlowRetry(interval time.Duration) *slowRetry {
	return &slowRetry{set: slowset.NewSlowSet(interval)}
}

func (s *slowRetry) run(ctx context.Context) { s.set.Run(ctx.Done()) }

// refused starts a new interval for key.
func (s *slowRetry) refused(key string) {
	s.set.Remove(key)
	s.set.Add(key, slowset.ObjectData{Timestamp: time.Now()})
	s.known.Store(key, true)
}

// adopt starts an interval for a PVC recorded as infeasible before this
// process saw it.
func (s *slowRetry) adopt(key string) {
	if _, ok := s.known.Load(key); !ok {
		s.refused(key)
	}
}

// wait returns how long key must still wait.
func (s *slowRetry) wait(key string) (time.Duration, bool) {
	if !s.set.Contains(key) {
		return 0, false
	}
	return s.set.TimeRemaining(key), true
}

// clear forgets key: the request succeeded or changed.
func (s *slowRetry) clear(key string) {
	s.set.Remove(key)
	s.known.Delete(key)
}
