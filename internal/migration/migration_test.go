package migration

import (
	"context"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// The three drivers csi-hub is tested with under their real names: each is
// recognised from its name alone, its in-tree StorageClass is translated, and
// an in-tree PV of it is translated to the handle the driver knows and back.
func TestDrivers(t *testing.T) {
	ctx := context.Background()
	kind := v1.AzureManagedDisk
	azureURI := "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/disks/disk-1"
	for _, tc := range []struct {
		driver, plugin string
		params         map[string]string
		wantParams     map[string]string
		wantTopoKey    string // from a zone parameter, "" if none
		source         v1.PersistentVolumeSource
		labels         map[string]string
		wantHandle     string
		backToInTree   func(*v1.PersistentVolume) bool
	}{{
		driver: "ebs.csi.aws.com", plugin: "kubernetes.io/aws-ebs",
		params:      map[string]string{"type": "gp3", "fsType": "xfs", "zone": "us-east-1a", "iopsPerGB": "10"},
		wantParams:  map[string]string{"type": "gp3", "csi.storage.k8s.io/fstype": "xfs", "iopsPerGB": "10", "allowautoiopspergbincrease": "true"},
		wantTopoKey: "topology.ebs.csi.aws.com/zone",
		source:      v1.PersistentVolumeSource{AWSElasticBlockStore: &v1.AWSElasticBlockStoreVolumeSource{VolumeID: "aws://us-east-1a/vol-0123", FSType: "ext4"}},
		wantHandle:  "vol-0123",
		backToInTree: func(pv *v1.PersistentVolume) bool {
			return pv.Spec.AWSElasticBlockStore != nil && pv.Spec.AWSElasticBlockStore.VolumeID == "vol-0123"
		},
	}, {
		driver: "pd.csi.storage.gke.io", plugin: "kubernetes.io/gce-pd",
		params:      map[string]string{"type": "pd-ssd", "fstype": "ext4", "zone": "us-central1-a"},
		wantParams:  map[string]string{"type": "pd-ssd", "csi.storage.k8s.io/fstype": "ext4"},
		wantTopoKey: "topology.gke.io/zone",
		source:      v1.PersistentVolumeSource{GCEPersistentDisk: &v1.GCEPersistentDiskVolumeSource{PDName: "disk-1"}},
		labels:      map[string]string{v1.LabelTopologyZone: "us-central1-a"},
		wantHandle:  "projects/UNSPECIFIED/zones/us-central1-a/disks/disk-1",
		backToInTree: func(pv *v1.PersistentVolume) bool {
			return pv.Spec.GCEPersistentDisk != nil && pv.Spec.GCEPersistentDisk.PDName == "disk-1"
		},
	}, {
		driver: "disk.csi.azure.com", plugin: "kubernetes.io/azure-disk",
		params:     map[string]string{"skuname": "Premium_LRS", "fsType": "ext4"},
		wantParams: map[string]string{"skuname": "Premium_LRS", "fsType": "ext4"}, // the Azure driver reads fsType itself
		source:     v1.PersistentVolumeSource{AzureDisk: &v1.AzureDiskVolumeSource{DiskName: "disk-1", DataDiskURI: azureURI, Kind: &kind}},
		wantHandle: azureURI,
		backToInTree: func(pv *v1.PersistentVolume) bool {
			return pv.Spec.AzureDisk != nil && pv.Spec.AzureDisk.DataDiskURI == azureURI && pv.Spec.AzureDisk.DiskName == "disk-1"
		},
	}} {
		t.Run(tc.driver, func(t *testing.T) {
			if got := InTreePlugin(tc.driver); got != tc.plugin {
				t.Fatalf("InTreePlugin(%s) = %q, want %q", tc.driver, got, tc.plugin)
			}
			sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "in-tree"}, Provisioner: tc.plugin, Parameters: tc.params}
			csiSC, err := StorageClassToCSI(ctx, tc.plugin, sc)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.wantParams {
				if csiSC.Parameters[k] != v {
					t.Errorf("translated parameter %s = %q, want %q (all: %v)", k, csiSC.Parameters[k], v, csiSC.Parameters)
				}
			}
			if _, left := csiSC.Parameters["zone"]; left {
				t.Errorf("zone parameter left in %v", csiSC.Parameters)
			}
			if tc.wantTopoKey != "" {
				if len(csiSC.AllowedTopologies) != 1 || csiSC.AllowedTopologies[0].MatchLabelExpressions[0].Key != tc.wantTopoKey {
					t.Errorf("allowedTopologies %+v, want one term on %s", csiSC.AllowedTopologies, tc.wantTopoKey)
				}
			}
			if sc.Parameters["zone"] == "" && tc.params["zone"] != "" || len(sc.AllowedTopologies) != 0 {
				t.Errorf("the caller's StorageClass was changed: %+v", sc)
			}

			pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv", Labels: tc.labels},
				Spec: v1.PersistentVolumeSpec{PersistentVolumeSource: tc.source, AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}}}
			if !IsInTree(pv) {
				t.Fatal("IsInTree = false for an in-tree PV")
			}
			csiPV, err := PVToCSI(ctx, pv, tc.driver)
			if err != nil {
				t.Fatal(err)
			}
			if csiPV.Spec.CSI.Driver != tc.driver || csiPV.Spec.CSI.VolumeHandle != tc.wantHandle {
				t.Errorf("PVToCSI: driver %s handle %s, want %s %s", csiPV.Spec.CSI.Driver, csiPV.Spec.CSI.VolumeHandle, tc.driver, tc.wantHandle)
			}
			if pv.Spec.CSI != nil {
				t.Error("PVToCSI changed its input")
			}
			if _, err := PVToCSI(ctx, pv, "other.csi.example.com"); err == nil {
				t.Error("PVToCSI accepted an in-tree PV of another driver")
			}
			back, err := PVToInTree(csiPV)
			if err != nil {
				t.Fatal(err)
			}
			if back.Spec.CSI != nil || !tc.backToInTree(back) {
				t.Errorf("PVToInTree: %+v", back.Spec.PersistentVolumeSource)
			}
		})
	}
}

func TestNotMigrated(t *testing.T) {
	for _, name := range []string{"hostpath.csi.k8s.io", "x.fake.csi-hub.io", ""} {
		if p := InTreePlugin(name); p != "" {
			t.Errorf("InTreePlugin(%q) = %q, want none", name, p)
		}
	}
	csiPV := &v1.PersistentVolume{Spec: v1.PersistentVolumeSpec{PersistentVolumeSource: v1.PersistentVolumeSource{
		CSI: &v1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com", VolumeHandle: "vol-1"}}}}
	if IsInTree(csiPV) {
		t.Error("IsInTree = true for a CSI PV")
	}
}

// Bad input gives an error that names the problem, never a half-translated PV.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		pv   *v1.PersistentVolume
		want string
	}{{
		name: "malformed EBS volume ID",
		pv: &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "bad-ebs"}, Spec: v1.PersistentVolumeSpec{PersistentVolumeSource: v1.PersistentVolumeSource{
			AWSElasticBlockStore: &v1.AWSElasticBlockStoreVolumeSource{VolumeID: "aws://us-east-1a/not-a-volume"}}}},
		want: "Invalid format for AWS volume",
	}, {
		name: "unknown plugin",
		pv: &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "nfs"}, Spec: v1.PersistentVolumeSpec{PersistentVolumeSource: v1.PersistentVolumeSource{
			NFS: &v1.NFSVolumeSource{Server: "x", Path: "/"}}}},
		want: "no in-tree volume source",
	}, {
		name: "unmanaged Azure disk",
		pv: &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "blob"}, Spec: v1.PersistentVolumeSpec{PersistentVolumeSource: v1.PersistentVolumeSource{
			AzureDisk: &v1.AzureDiskVolumeSource{DiskName: "d", DataDiskURI: "https://x/d.vhd", Kind: ptr.To(v1.AzureDedicatedBlobDisk)}}}},
		want: "is not supported in csi migration",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := PVToCSI(ctx, tc.pv, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.pv.Name) {
				t.Errorf("PVToCSI = %v, %v; want an error naming %q and containing %q", out, err, tc.pv.Name, tc.want)
			}
		})
	}
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "both"}, Provisioner: "kubernetes.io/aws-ebs",
		Parameters:        map[string]string{"zone": "us-east-1a"},
		AllowedTopologies: []v1.TopologySelectorTerm{{MatchLabelExpressions: []v1.TopologySelectorLabelRequirement{{Key: v1.LabelTopologyZone, Values: []string{"us-east-1b"}}}}}}
	if _, err := StorageClassToCSI(ctx, "kubernetes.io/aws-ebs", sc); err == nil || !strings.Contains(err.Error(), `StorageClass "both"`) {
		t.Errorf("StorageClassToCSI with both zone and allowedTopologies: %v", err)
	}
	if _, err := PVToInTree(&v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pd"}, Spec: v1.PersistentVolumeSpec{PersistentVolumeSource: v1.PersistentVolumeSource{
		CSI: &v1.CSIPersistentVolumeSource{Driver: "pd.csi.storage.gke.io", VolumeHandle: "vol-1"}}}}); err == nil {
		t.Error("PVToInTree accepted a GCE PD handle that is not a disk path")
	}
}
