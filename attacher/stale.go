package attacher

import "sync"

// staleGuard remembers which resourceVersions of an object our own
// writes have replaced. When a sync finds the informer still holding one of
// them, the cache has not caught up with our write yet: acting on it would
// repeat a CSI call and a write that are already done. The informer delivers
// our write soon and that event queues the object again, so skipping is safe.
type staleGuard struct {
	mu         sync.Mutex
	superseded map[string]map[string]bool // name -> resourceVersions we replaced
}

func newStaleGuard() *staleGuard {
	return &staleGuard{superseded: map[string]map[string]bool{}}
}

// wrote records that a write of ours replaced version rv of name.
func (g *staleGuard) wrote(name, rv string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.superseded[name] == nil {
		g.superseded[name] = map[string]bool{}
	}
	g.superseded[name][rv] = true
}

// isStale reports whether rv of name is one our writes replaced. Any other
// version means the cache has caught up (or moved past us), so the record is
// dropped.
func (g *staleGuard) isStale(name, rv string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.superseded[name][rv] {
		return true
	}
	delete(g.superseded, name)
	return false
}

// forget drops the record of name: after a failed sync, or once it is deleted.
func (g *staleGuard) forget(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.superseded, name)
}
