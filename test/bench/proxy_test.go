package bench

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
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
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			p.mu.Lock()
			p.writes++
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	p.URL = "http://" + ln.Addr().String()
	return p
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
