package provisioner

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/provisioner/datasource"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// finalizerPatchGate holds the hub's PATCHes that remove a source protection
// finalizer from a claim of one namespace, until want of them are in flight
// at once (or a while has passed), and records the most seen at once.
type finalizerPatchGate struct {
	ns   string
	want int
	hold time.Duration

	mu       sync.Mutex
	inFlight int
	max      int
	total    int
	all      chan struct{} // closed when want are in flight
}

func (g *finalizerPatchGate) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if req.Method != http.MethodPatch || !strings.Contains(req.URL.Path, "/namespaces/"+g.ns+"/persistentvolumeclaims/") || req.Body == nil {
			return next.RoundTrip(req)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		if !bytes.Contains(body, []byte(`finalizers"`)) { // "finalizers" or "$deleteFromPrimitiveList/finalizers"
			return next.RoundTrip(req)
		}
		g.mu.Lock()
		g.inFlight++
		g.total++
		g.max = max(g.max, g.inFlight)
		if g.inFlight == g.want {
			close(g.all)
		}
		g.mu.Unlock()
		select {
		case <-g.all:
		case <-time.After(g.hold):
		}
		resp, err := next.RoundTrip(req)
		g.mu.Lock()
		g.inFlight--
		g.mu.Unlock()
		return resp, err
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// --cloning-protection-threads is the number of workers of the queue that
// removes the source protection finalizers (external-provisioner's
// cloning-protection controller). Three clone sources that no claim uses
// any more have their finalizer removed; each removal is held at the API
// until three are in flight at once or 2s have passed. With three workers
// the three removals are in flight together; with one, one at a time.
func TestCloningProtectionThreads(t *testing.T) {
	const sources = 3
	for _, threads := range []int{1, sources} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.CloningProtectionThreads = threads
			e := baseEnv(t, cfg)
			e.startFake(fakedriver.Options{})
			gate := &finalizerPatchGate{ns: e.ns, want: sources, hold: 2 * time.Second, all: make(chan struct{})}
			rc := rest.CopyConfig(e.c.RESTConfig())
			rc.Wrap(gate.wrap)
			e.hub = hubtest.Start(t, rc, hubtest.Options(e.socket), func(h *hub.Hub) error {
				ctrl, err := New(t.Context(), hubDeps(h, e.cfg), e.cfg)
				if err != nil {
					return err
				}
				e.ctrl = ctrl
				h.Add(ctrl)
				return nil
			})
			// Sources left protected (as after a crash between a clone's
			// provisioning and the finalizer's removal), of a class that is
			// nobody's, so nothing else writes them.
			for i := range sources {
				pvc := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("src-%d", i), Namespace: e.ns,
					Finalizers: []string{datasource.FinalizerCloneSource}},
					Spec: v1.PersistentVolumeClaimSpec{StorageClassName: ptr.To(e.ns + "-nobodys"),
						AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
						Resources:   v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}}}}
				if _, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx, pvc, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			for i := range sources {
				name := fmt.Sprintf("src-%d", i)
				e.eventually(time.Minute, "the protection finalizer removed from "+name, func() (bool, error) {
					got, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, name, metav1.GetOptions{})
					return err == nil && !slices.Contains(got.Finalizers, datasource.FinalizerCloneSource), err
				})
			}
			gate.mu.Lock()
			defer gate.mu.Unlock()
			t.Logf("--cloning-protection-threads=%d: %d removals, at most %d in flight at once, all done in %v",
				threads, gate.total, gate.max, time.Since(start).Round(100*time.Millisecond))
			if gate.total < sources {
				t.Errorf("%d finalizer removals seen at the API, want %d", gate.total, sources)
			}
			if gate.max != threads {
				t.Errorf("at most %d finalizer removals in flight at once, want %d (--cloning-protection-threads)", gate.max, threads)
			}
		})
	}
}
