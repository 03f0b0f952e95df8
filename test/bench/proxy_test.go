package bench

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// countingProxy forwards plain-HTTP requests to the API server with the test's
// admin credentials and counts mutating requests.
type countingProxy struct {
	URL    string
	mu     sync.Mutex
	writes int
	// lists and watches count collection GETs and watches (watch=true),
	// streams the watches that stream the initial list (sendInitialEvents);
	// lastList is when the latest list response, or the initial events of a
	// streaming watch, was complete: when an informer's cache is synced.
	lists, watches, streams int
	listsInFlight           int
	lastList                time.Time
}

func startProxy(b testing.TB, cfg *rest.Config) *countingProxy {
	b.Helper()
	target, err := url.Parse(cfg.Host)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = tr
	rp.FlushInterval = -1 // stream watches
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isList := false
		switch verb := requestVerb(r); verb {
		case "write":
			p.mu.Lock()
			p.writes++
			p.mu.Unlock()
		case "watch":
			p.mu.Lock()
			p.watches++
			if r.URL.Query().Get("sendInitialEvents") == "true" {
				p.streams++
				w = &initialEventsWriter{ResponseWriter: w, p: p}
			}
			p.mu.Unlock()
		case "list":
			isList = true
			p.mu.Lock()
			p.lists++
			p.listsInFlight++
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
		if isList {
			p.mu.Lock()
			p.lastList = time.Now()
			p.listsInFlight--
			p.mu.Unlock()
		}
	})}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	p.URL = "http://" + ln.Addr().String()
	return p
}

// requestVerb classifies a request: "write", "watch", "list" (a GET of a
// collection), "get" (one object, discovery...).
func requestVerb(r *http.Request) string {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return "write"
	case http.MethodGet:
	default:
		return "other"
	}
	if r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1" {
		return "watch"
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var rest []string
	switch {
	case len(segs) >= 3 && segs[0] == "api":
		rest = segs[2:]
	case len(segs) >= 4 && segs[0] == "apis":
		rest = segs[3:]
	default:
		return "get" // discovery
	}
	if len(rest) >= 3 && rest[0] == "namespaces" {
		rest = rest[2:]
	}
	if len(rest) == 1 {
		return "list"
	}
	return "get"
}

// initialEventsWriter notes when a streaming watch sends the bookmark that
// ends its initial events (a list's end, for an informer).
type initialEventsWriter struct {
	http.ResponseWriter
	p    *countingProxy
	done bool
}

func (w *initialEventsWriter) Write(b []byte) (int, error) {
	if !w.done && bytes.Contains(b, []byte("k8s.io/initial-events-end")) {
		w.done = true
		w.p.mu.Lock()
		w.p.lastList = time.Now()
		w.p.mu.Unlock()
	}
	return w.ResponseWriter.Write(b)
}

func (w *initialEventsWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Requests returns the lists, watches and streaming watches made so far, and
// when the latest list (or streamed initial list) ended; zero while a list
// is in flight.
func (p *countingProxy) Requests() (lists, watches, streams int, lastList time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listsInFlight > 0 {
		return p.lists, p.watches, p.streams, time.Time{}
	}
	return p.lists, p.watches, p.streams, p.lastList
}

func (p *countingProxy) Writes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.writes
}

// kubeconfig writes a kubeconfig that points at the proxy.
func (p *countingProxy) kubeconfig(b testing.TB) string {
	path := filepath.Join(b.TempDir(), "kubeconfig")
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: bench, cluster: {server: %q}}]
users: [{name: bench, user: {}}]
contexts: [{name: bench, context: {cluster: bench, user: bench}}]
current-context: bench
`, p.URL)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// settledWrites waits until no write has been made for 3 s (queued events
// drained), then returns the count.
func (p *countingProxy) settledWrites() int {
	last, quietSince := p.Writes(), time.Now()
	for time.Since(quietSince) < 3*time.Second {
		time.Sleep(250 * time.Millisecond)
		if n := p.Writes(); n != last {
			last, quietSince = n, time.Now()
		}
	}
	return last
}
