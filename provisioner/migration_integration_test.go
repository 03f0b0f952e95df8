package provisioner

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// In-tree migration on the real control plane: the fake driver serves under
// the real CSI name, the StorageClass names the in-tree plugin, and
// kube-controller-manager hands the claim over as it does in every cluster
// since CSI migration went GA (storage-provisioner annotation = driver name,
// pv.kubernetes.io/migrated-to).

const (
	ebsDriver = "ebs.csi.aws.com"
	ebsPlugin = "kubernetes.io/aws-ebs"
)

// migrationEnv is an env whose fake driver carries the real CSI name.
func migrationEnv(t *testing.T, driver string) *env {
	t.Helper()
	e := baseEnv(t, DefaultConfig())
	e.driver = driver
	e.startFake(fakedriver.Options{})
	return e
}

func provisionedBy(plugin string) scOption {
	return func(sc *storagev1.StorageClass) { sc.Provisioner = plugin }
}

// waitMigratedPV waits for the PV of claim to be bound and to carry the
// migrated-to annotation kube-controller-manager adds to in-tree PVs.
func (e *env) waitMigratedPV(claim string) (*v1.PersistentVolumeClaim, *v1.PersistentVolume) {
	e.t.Helper()
	pvc, pv := e.waitBound(claim)
	e.eventually(30*time.Second, "PV "+pv.Name+" to be annotated migrated-to by kube-controller-manager", func() (bool, error) {
		var err error
		pv, err = e.kube.CoreV1().PersistentVolumes().Get(e.ctx, pv.Name, metav1.GetOptions{})
		return err == nil && pv.Annotations[annMigratedTo] != "", nil
	})
	return pvc, pv
}

// TestMigratedEBSClaim: a claim of a kubernetes.io/aws-ebs class is
// provisioned by ebs.csi.aws.com with the class translated (fsType ->
// csi.storage.k8s.io/fstype, iopsPerGB + allowautoiopspergbincrease), the PV
// is written in the in-tree format with the annotations and finalizer of
// external-provisioner, and its deletion calls DeleteVolume with the handle.
func TestMigratedEBSClaim(t *testing.T) {
	e := migrationEnv(t, ebsDriver)
	e.startHub()
	if e.ctrl.migrateFrom != ebsPlugin {
		t.Fatalf("driver %s: migration from %q, want %s chosen from the name", ebsDriver, e.ctrl.migrateFrom, ebsPlugin)
	}
	sc := e.storageClass("gp3", provisionedBy(ebsPlugin), withPolicy(v1.PersistentVolumeReclaimDelete),
		withParams("type", "gp3", "fsType", "xfs", "iopsPerGB", "10"))
	e.createPVC("data", sc.Name, "2Gi")
	pvc, pv := e.waitMigratedPV("data")

	// kube-controller-manager names the CSI driver, not the class's in-tree
	// plugin, as the claim's provisioner (the PVC gets no migrated-to: that
	// marks claims annotated with the in-tree name by older versions).
	for _, k := range []string{annStorageProvisioner, annBetaStorageProvisioner} {
		if got := pvc.Annotations[k]; got != ebsDriver {
			t.Errorf("PVC %s = %q, want %s (set by kube-controller-manager under migration)", k, got, ebsDriver)
		}
	}

	reqs := e.createRequests(pv.Name)
	if len(reqs) != 1 {
		t.Fatalf("%d CreateVolume requests for %s, want 1", len(reqs), pv.Name)
	}
	wantParams := map[string]string{"type": "gp3", "iopsPerGB": "10", "allowautoiopspergbincrease": "true"}
	if got := reqs[0].GetParameters(); !maps.Equal(got, wantParams) {
		t.Errorf("CreateVolume parameters %v, want the translated %v", got, wantParams)
	}
	if fs := reqs[0].GetVolumeCapabilities()[0].GetMount().GetFsType(); fs != "xfs" {
		t.Errorf("CreateVolume fsType %q, want xfs from the in-tree fsType parameter", fs)
	}

	ebs := pv.Spec.AWSElasticBlockStore
	if ebs == nil || pv.Spec.CSI != nil {
		t.Fatalf("PV source %+v, want awsElasticBlockStore and no csi", pv.Spec.PersistentVolumeSource)
	}
	if _, ok := e.drv.Volume(ebs.VolumeID); !ok || ebs.FSType != "xfs" {
		t.Errorf("awsElasticBlockStore %+v: want the driver's volume ID and fsType xfs", ebs)
	}
	for k, want := range map[string]string{annDynamicallyProvisioned: ebsPlugin, annMigratedTo: ebsDriver,
		annDeletionSecretName: "", annDeletionSecretNamespace: ""} {
		if got, ok := pv.Annotations[k]; !ok || got != want {
			t.Errorf("PV annotation %s = %q (present %v), want %q", k, got, ok, want)
		}
	}
	// Ours, and kube-controller-manager's pv-protection; not its in-tree
	// kubernetes.io/pv-controller (a migrated PV is the driver's to delete).
	if want := []string{finalizerPV, "kubernetes.io/pv-protection"}; !slices.Equal(pv.Finalizers, want) {
		t.Errorf("PV finalizers %v, want %v", pv.Finalizers, want)
	}
	if pv.Spec.StorageClassName != sc.Name || pv.Spec.PersistentVolumeReclaimPolicy != v1.PersistentVolumeReclaimDelete {
		t.Errorf("PV class %q policy %q", pv.Spec.StorageClassName, pv.Spec.PersistentVolumeReclaimPolicy)
	}

	e.deletePVC("data")
	e.waitPVGone(pv.Name)
	var deleted []string
	for _, r := range fakedriver.RequestsOf[*csi.DeleteVolumeRequest](e.drv) {
		deleted = append(deleted, r.GetVolumeId())
	}
	if !slices.Equal(deleted, []string{ebs.VolumeID}) {
		t.Errorf("DeleteVolume calls for %v, want exactly one for %s", deleted, ebs.VolumeID)
	}
	if n := len(e.drv.Volumes()); n != 0 {
		t.Errorf("%d volumes left in the backend", n)
	}
}

// TestMigrationHandoverWithOfficialProvisioner: external-provisioner v6.4.0
// and csi-hub provision the same kind of in-tree claim; the two PVs are the
// same field by field (but for names, UIDs, timestamps and the volume ID),
// and each deletes the other's PV.
func TestMigrationHandoverWithOfficialProvisioner(t *testing.T) {
	e := migrationEnv(t, ebsDriver)
	sc := e.storageClass("gp2", provisionedBy(ebsPlugin), withPolicy(v1.PersistentVolumeReclaimDelete),
		withParams("type", "gp2", "fsType", "ext4", "encrypted", "true"))
	byOfficial, byHub := e.provisionEach(t, sc.Name, e.waitMigratedPV)
	compareInTreePVs(t, byOfficial, byHub)
	official, hub := e.createRequests(byOfficial.Name), e.createRequests(byHub.Name)
	if len(official) != 1 || len(hub) != 1 {
		t.Fatalf("CreateVolume calls: official %d, csi-hub %d", len(official), len(hub))
	}
	if !maps.Equal(official[0].GetParameters(), hub[0].GetParameters()) ||
		!reflect.DeepEqual(official[0].GetVolumeCapabilities()[0].GetMount(), hub[0].GetVolumeCapabilities()[0].GetMount()) {
		t.Errorf("CreateVolume: official %v, csi-hub %v", official[0], hub[0])
	}

	// csi-hub deletes the official sidecar's in-tree PV, and the official sidecar csi-hub's.
	e.deleteEachOthers(t, byOfficial, byHub, func(pv *v1.PersistentVolume) string { return pv.Spec.AWSElasticBlockStore.VolumeID })
}

// compareInTreePVs is comparePVs for PVs in the in-tree format.
func compareInTreePVs(t *testing.T, official, hub *v1.PersistentVolume) {
	t.Helper()
	compareMeta(t, official, hub)
	normalize := func(pv *v1.PersistentVolume) v1.PersistentVolumeSpec {
		s := *pv.Spec.DeepCopy()
		s.ClaimRef = &v1.ObjectReference{Kind: s.ClaimRef.Kind, APIVersion: s.ClaimRef.APIVersion, Namespace: s.ClaimRef.Namespace}
		if s.AWSElasticBlockStore != nil {
			s.AWSElasticBlockStore.VolumeID = ""
		}
		return s
	}
	if o, h := normalize(official), normalize(hub); !reflect.DeepEqual(o, h) {
		t.Errorf("spec differs beyond names and handles:\nofficial %+v\ncsi-hub  %+v", o, h)
	}
	if official.Status.Phase != hub.Status.Phase {
		t.Errorf("phase: official %s, csi-hub %s", official.Status.Phase, hub.Status.Phase)
	}
}

// TestMigrationBadInput: what cannot be translated gives a Warning event that
// names the problem and leaves nothing behind in the backend.
func TestMigrationBadInput(t *testing.T) {
	t.Run("PV not translatable back to the in-tree format", func(t *testing.T) {
		// The fake driver's volume IDs are not GCE disk paths, so the PV of a
		// kubernetes.io/gce-pd claim cannot be written as gcePersistentDisk.
		e := migrationEnv(t, "pd.csi.storage.gke.io")
		e.startHub()
		sc := e.storageClass("pd", provisionedBy("kubernetes.io/gce-pd"), withPolicy(v1.PersistentVolumeReclaimDelete),
			withParams("type", "pd-standard"))
		e.createPVC("data", sc.Name, "1Gi")
		ev := e.waitEvent("data", reasonFailed, v1.EventTypeWarning, "back to its in-tree source")
		t.Logf("event: %s", ev.Message)
		if !strings.Contains(ev.Message, "was deleted again") {
			t.Errorf("event %q does not say the created volume was deleted", ev.Message)
		}
		if e.drv.Calls("CreateVolume") == 0 || e.drv.Calls("DeleteVolume") == 0 {
			t.Errorf("CreateVolume %d, DeleteVolume %d calls", e.drv.Calls("CreateVolume"), e.drv.Calls("DeleteVolume"))
		}
		e.deletePVC("data")
		e.eventually(30*time.Second, "no volume left in the backend", func() (bool, error) { return len(e.drv.Volumes()) == 0, nil })
		pvs, err := e.kube.CoreV1().PersistentVolumes().List(e.ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, pv := range pvs.Items {
			if pv.Spec.StorageClassName == sc.Name {
				t.Errorf("PV %s created for an untranslatable volume", pv.Name)
			}
		}
	})

	t.Run("released in-tree PVs that cannot be translated to CSI", func(t *testing.T) {
		e := migrationEnv(t, ebsDriver)
		e.startHub()
		for name, src := range map[string]v1.PersistentVolumeSource{
			"malformed": {AWSElasticBlockStore: &v1.AWSElasticBlockStoreVolumeSource{VolumeID: "aws://us-east-1a/not-a-volume"}},
			"unknown":   {NFS: &v1.NFSVolumeSource{Server: "nfs.example.com", Path: "/export"}},
		} {
			name = e.ns + "-" + name
			e.releasedPV(name, src, map[string]string{annDynamicallyProvisioned: ebsPlugin})
			ev := e.waitPVEvent(name, reasonVolumeFailedDelete, v1.EventTypeWarning)
			t.Logf("%s: %s", name, ev.Message)
			if !strings.Contains(ev.Message, name) || !strings.Contains(ev.Message, "in-tree") {
				t.Errorf("event %q does not name the PV and the translation problem", ev.Message)
			}
		}
		if n := e.drv.Calls("DeleteVolume"); n != 0 {
			t.Errorf("%d DeleteVolume calls for untranslatable PVs", n)
		}
	})
}

// releasedPV creates a PV bound to a claim that no longer exists, which
// kube-controller-manager marks Released.
func (e *env) releasedPV(name string, src v1.PersistentVolumeSource, annotations map[string]string) {
	e.t.Helper()
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimDelete,
			PersistentVolumeSource:        src,
			ClaimRef:                      &v1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: e.ns, Name: "gone", UID: types.UID("0e5c2f1e-0000-4000-8000-" + strings.Repeat("0", 12))},
		},
	}
	if _, err := e.kube.CoreV1().PersistentVolumes().Create(e.ctx, pv, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.kube.CoreV1().PersistentVolumes().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// waitPVEvent waits for an event on a PV (events of cluster-scoped objects
// are in the default namespace).
func (e *env) waitPVEvent(name, reason, eventType string) v1.Event {
	e.t.Helper()
	var found v1.Event
	e.eventually(60*time.Second, reason+" event on PV "+name, func() (bool, error) {
		list, err := e.kube.CoreV1().Events(metav1.NamespaceDefault).List(e.ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + name + ",reason=" + reason + ",type=" + eventType,
		})
		if err != nil || len(list.Items) == 0 {
			return false, nil
		}
		found = list.Items[0]
		return true, nil
	})
	return found
}
