package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// startDriver runs a fakedriver on a socket in a temp dir (short path: unix
// socket paths are limited to 108 bytes).
func startDriver(t *testing.T, opts fakedriver.Options) (*fakedriver.Driver, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "hub-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := fakedriver.New(opts)
	sock := filepath.Join(dir, "csi.sock")
	if err := d.Start(sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.StopNow)
	return d, sock
}

// running is a full controller-mode hub run in the background.
type running struct {
	hub    *hub.Hub
	cancel context.CancelFunc
	done   chan error
}

func startHub(t *testing.T, cfg *rest.Config, opts hub.Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h, err := NewController(ctx, cfg, opts, DefaultControllerOptions())
	if err != nil {
		cancel()
		t.Fatalf("NewController: %v", err)
	}
	r := &running{hub: h, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- h.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) error {
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // keep it for a second stop
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("hub did not stop within 30s")
		return nil
	}
}

// get serves one request from the hub's HTTP handler.
func get(h *hub.Hub, path string) (int, string) {
	rec := httptest.NewRecorder()
	h.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newNamespace(t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	ns, err := c.CreateNamespace(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func storageClass(t *testing.T, kube kubernetes.Interface, driver string, params map[string]string) string {
	t.Helper()
	sc := &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{GenerateName: "sc-"},
		Provisioner: driver,
		Parameters:  params,
	}
	sc, err := kube.StorageV1().StorageClasses().Create(context.Background(), sc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
	})
	return sc.Name
}

func createPVC(t *testing.T, kube kubernetes.Interface, ns, name, class string) *corev1.PersistentVolumeClaim {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			},
		},
	}
	pvc, err := kube.CoreV1().PersistentVolumeClaims(ns).Create(context.Background(), pvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pvc
}

func waitBound(t *testing.T, kube kubernetes.Interface, ns, name string, timeout time.Duration) *corev1.PersistentVolumeClaim {
	t.Helper()
	var pvc *corev1.PersistentVolumeClaim
	eventually(t, timeout, "PVC "+ns+"/"+name+" Bound", func() (bool, string) {
		var err error
		pvc, err = kube.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return pvc.Status.Phase == corev1.ClaimBound, string(pvc.Status.Phase)
	})
	return pvc
}

// watchCounter tracks, by resource, the most watches a client held open at
// once. (Counting requests would mislead: client-go first tries a streaming
// "watch list" and falls back to list+watch when the server refuses it.)
type watchCounter struct {
	mu       sync.Mutex
	open     map[string]int
	maxOpen  map[string]int
	requests map[string]int
}

func newWatchCounter() *watchCounter {
	return &watchCounter{open: map[string]int{}, maxOpen: map[string]int{}, requests: map[string]int{}}
}

func (w *watchCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Query().Get("watch") != "true" {
			return rt.RoundTrip(req)
		}
		parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
		res := parts[len(parts)-1]
		resp, err := rt.RoundTrip(req)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.requests[res]++
		if err != nil || resp.StatusCode != http.StatusOK {
			return resp, err
		}
		w.open[res]++
		w.maxOpen[res] = max(w.maxOpen[res], w.open[res])
		resp.Body = &closeNotifier{ReadCloser: resp.Body, onClose: func() {
			w.mu.Lock()
			w.open[res]--
			w.mu.Unlock()
		}}
		return resp, nil
	})
}

// snapshot returns the highest number of concurrently open watches by resource.
func (w *watchCounter) snapshot() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.maxOpen {
		out[k] = v
	}
	return out
}

type closeNotifier struct {
	io.ReadCloser
	once    sync.Once
	onClose func()
}

func (c *closeNotifier) Close() error {
	c.once.Do(c.onClose)
	return c.ReadCloser.Close()
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
