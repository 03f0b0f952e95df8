package plugin

import "sync"

// InFlight refuses a second concurrent operation on the same key (volume ID or
// name). CSI asks drivers to answer Aborted then, so the caller retries later
// instead of two operations racing on one volume.
type InFlight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

// Acquire takes key; ok is false when an operation on key is already running.
// The caller must call release exactly once when ok is true.
func (f *InFlight) Acquire(key string) (release func(), ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[string]struct{}{}
	}
	if _, busy := f.keys[key]; busy {
		return nil, false
	}
	f.keys[key] = struct{}{}
	return func() {
		f.mu.Lock()
		delete(f.keys, key)
		f.mu.Unlock()
	}, true
}
