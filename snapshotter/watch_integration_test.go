package snapshotter_test

import (
	"net/http"
	"strings"
	"sync"
)

// watchCounter counts the watches a hub opens, by resource. A reflector
// first tries a streaming list (watch with sendInitialEvents=true) and, where
// the server does not stream, falls back to list + plain watch; so one
// informer is one streaming attempt and/or one plain watch.
type watchCounter struct {
	mu               sync.Mutex
	streaming, plain map[string]int
}

func (w *watchCounter) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		q := req.URL.Query()
		if req.Method == http.MethodGet && q.Get("watch") == "true" {
			parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
			resource := parts[len(parts)-1]
			w.mu.Lock()
			if w.streaming == nil {
				w.streaming, w.plain = map[string]int{}, map[string]int{}
			}
			if q.Get("sendInitialEvents") == "true" {
				w.streaming[resource]++
			} else {
				w.plain[resource]++
			}
			w.mu.Unlock()
		}
		return next.RoundTrip(req)
	})
}

// informers is how many informers (reflectors) watch resource.
func (w *watchCounter) informers(resource string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(w.streaming[resource], w.plain[resource])
}

// streams is how many watches of resource asked for a streaming list.
func (w *watchCounter) streams(resource string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.streaming[resource]
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
