package provisioner

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// A driver error becomes a Warning ProvisioningFailed event and is retried
// with per-item exponential backoff: a handful of calls in seconds, not a
// storm, and the claim converges once the backend recovers.
func TestFailureRetriedWithBackoff(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	e.drv.InjectError("CreateVolume", codes.Internal, "backend on fire", fakedriver.Forever)
	sc := e.storageClass("flaky")
	pvc := e.createPVC("flaky", sc.Name, "1Gi")
	name := "pvc-" + string(pvc.UID)

	e.waitEvent("flaky", reasonFailed, v1.EventTypeWarning, "backend on fire")
	const window = 6 * time.Second
	start := len(e.createRequests(name))
	time.Sleep(window)
	calls := len(e.createRequests(name)) - start
	// hubtest: backoff from 100ms doubling to a 2s cap. Within 6s after the
	// first event that allows ~5 calls; a retry storm would make thousands.
	t.Logf("%d CreateVolume calls in %s while failing", calls, window)
	if calls < 2 || calls > 10 {
		t.Errorf("%d CreateVolume calls in %s: want a few (exponential backoff), neither none nor a storm", calls, window)
	}
	ev := e.events("flaky", reasonFailed)
	if len(ev) == 0 || !strings.Contains(ev[0].Message, `failed to provision volume with StorageClass "`+sc.Name+`"`) {
		t.Errorf("ProvisioningFailed events %v", ev)
	}
	// Every retry fails the same way: reported once, not once per retry.
	failedEvents := 0
	for _, st := range e.hub.Steps.Recent(0) {
		if st.Kind == steps.Event && st.Action == reasonFailed && strings.HasSuffix(st.Object, "/flaky") {
			failedEvents++
		}
	}
	if failedEvents != 1 {
		t.Errorf("%d ProvisioningFailed events emitted for %d identical failures, want 1", failedEvents, calls+start)
	}
	if len(e.events("flaky", reasonProvisioning)) != 1 {
		t.Errorf("want exactly one Provisioning event across retries, got %d", len(e.events("flaky", reasonProvisioning)))
	}

	e.drv.ClearFaults()
	e.waitBound("flaky")
	if n := len(e.drv.Volumes()); n != 1 {
		t.Errorf("%d backend volumes, want 1", n)
	}
}

// A PVC restoring a VolumeSnapshot that does not exist, or cloning a PVC
// that is not bound, gets a clear Warning and stays Pending: it is never
// provisioned as an empty volume. A PVC whose source belongs to a volume
// populator is left to the populator, as the sidecar does.
func TestUnusableDataSourceNotProvisionedEmpty(t *testing.T) {
	e := newEnv(t, fakedriver.Options{}, DefaultConfig())
	sc := e.storageClass("src")
	snapGroup := "snapshot.storage.k8s.io"
	e.createPVC("from-snap", sc.Name, "1Gi", func(p *v1.PersistentVolumeClaim) {
		p.Spec.DataSource = &v1.TypedLocalObjectReference{APIGroup: &snapGroup, Kind: "VolumeSnapshot", Name: "snap1"}
	})
	e.createPVC("clone", sc.Name, "1Gi", func(p *v1.PersistentVolumeClaim) {
		p.Spec.DataSource = &v1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "from-snap"}
	})
	popGroup := "populator.example.com"
	e.createPVC("populated", sc.Name, "1Gi", func(p *v1.PersistentVolumeClaim) {
		p.Spec.DataSourceRef = &v1.TypedObjectReference{APIGroup: &popGroup, Kind: "Hello", Name: "h1"}
	})
	e.waitEvent("from-snap", reasonFailed, v1.EventTypeWarning, "VolumeSnapshot "+e.ns+"/snap1 not found")
	e.waitEvent("populated", reasonProvisioning, v1.EventTypeNormal, "external populator")
	e.waitEvent("clone", reasonFailed, v1.EventTypeWarning, "source PVC "+e.ns+"/from-snap must be Bound")
	time.Sleep(2 * time.Second)
	if n := e.drv.Calls("CreateVolume"); n != 0 {
		t.Errorf("%d CreateVolume calls for PVCs with an unsupported data source, want 0", n)
	}
	for _, name := range []string{"from-snap", "clone", "populated"} {
		p, err := e.kube.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, name, metaGet)
		if err != nil || p.Status.Phase != v1.ClaimPending {
			t.Errorf("PVC %s: %v phase %s, want Pending", name, err, p.Status.Phase)
		}
	}
}

var metaGet = metav1.GetOptions{}
