package attacher

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

func TestFinalizerNameMatchesUpstream(t *testing.T) {
	for driver, want := range map[string]string{
		"block.csi-hub.io":   "external-attacher/block-csi-hub-io",
		"example.com/driver": "external-attacher/example-com-driver",
		"Hostpath_CSI":       "external-attacher/Hostpath-CSI",
		"trailing.":          "external-attacher/trailing-X",
	} {
		if got := FinalizerName(driver); got != want {
			t.Errorf("FinalizerName(%q) = %q, want %q", driver, got, want)
		}
	}
}

func TestNodeIDFromCSINode(t *testing.T) {
	n := &storagev1.CSINode{Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{
		{Name: "other.io", NodeID: "x"}, {Name: "mine.io", NodeID: "node-7"},
	}}}
	if id, ok := nodeIDFromCSINode("mine.io", n); !ok || id != "node-7" {
		t.Errorf("got %q %v, want node-7 true", id, ok)
	}
	if _, ok := nodeIDFromCSINode("absent.io", n); ok {
		t.Error("found a driver the CSINode does not list")
	}
}

func pvSpec(modes []v1.PersistentVolumeAccessMode, block bool, fsType string) *v1.PersistentVolumeSpec {
	s := &v1.PersistentVolumeSpec{
		AccessModes:            modes,
		MountOptions:           []string{"noatime"},
		PersistentVolumeSource: v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: "d", VolumeHandle: "h", FSType: fsType}},
	}
	if block {
		s.VolumeMode = ptr.To(v1.PersistentVolumeBlock)
	}
	return s
}

func TestVolumeCapability(t *testing.T) {
	rwo := []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}
	tests := []struct {
		name        string
		spec        *v1.PersistentVolumeSpec
		multiWriter bool
		wantBlock   bool
		wantFS      string
		wantMode    csi.VolumeCapability_AccessMode_Mode
		wantErr     string
	}{
		{name: "mount with PV fsType", spec: pvSpec(rwo, false, "xfs"), wantFS: "xfs", wantMode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		{name: "mount falls back to default fsType", spec: pvSpec(rwo, false, ""), wantFS: "ext3", wantMode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		{name: "block", spec: pvSpec(rwo, true, "ext4"), wantBlock: true, wantMode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		{name: "read-only many", spec: pvSpec([]v1.PersistentVolumeAccessMode{v1.ReadOnlyMany}, false, "ext4"), wantFS: "ext4", wantMode: csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY},
		{name: "RWOP with multi-writer capability", spec: pvSpec([]v1.PersistentVolumeAccessMode{v1.ReadWriteOncePod}, false, "ext4"), multiWriter: true, wantFS: "ext4", wantMode: csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER},
		{name: "impossible mode mix", spec: pvSpec([]v1.PersistentVolumeAccessMode{v1.ReadOnlyMany, v1.ReadWriteOnce}, false, "ext4"), wantErr: "spec.accessModes"},
		{name: "not CSI", spec: &v1.PersistentVolumeSpec{AccessModes: rwo}, wantErr: "spec.csi"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := volumeCapability(tc.spec, tc.multiWriter, "ext3")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.GetAccessMode().GetMode() != tc.wantMode {
				t.Errorf("mode = %s, want %s", got.GetAccessMode().GetMode(), tc.wantMode)
			}
			if tc.wantBlock {
				if got.GetBlock() == nil {
					t.Errorf("want block access, got %v", got)
				}
				return
			}
			if got.GetMount().GetFsType() != tc.wantFS {
				t.Errorf("fsType = %q, want %q", got.GetMount().GetFsType(), tc.wantFS)
			}
			if flags := got.GetMount().GetMountFlags(); len(flags) != 1 || flags[0] != "noatime" {
				t.Errorf("mount flags = %v, want [noatime]", flags)
			}
		})
	}
}

func TestSourceOf(t *testing.T) {
	csiPV := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv1"}, Spec: *pvSpec(nil, false, "")}
	nfsPV := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv2"}}
	ebsPV := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "ebs"}, Spec: v1.PersistentVolumeSpec{
		AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
		PersistentVolumeSource: v1.PersistentVolumeSource{AWSElasticBlockStore: &v1.AWSElasticBlockStoreVolumeSource{
			VolumeID: "aws://us-east-1a/vol-0abc", FSType: "xfs"}}}}
	badEBS := ebsPV.DeepCopy()
	badEBS.Name, badEBS.Spec.AWSElasticBlockStore.VolumeID = "bad-ebs", "aws://us-east-1a/disk-1"
	getPV := func(name string) (*v1.PersistentVolume, error) {
		switch name {
		case "pv1":
			return csiPV, nil
		case "pv2":
			return nfsPV, nil
		case "ebs":
			return ebsPV, nil
		case "bad-ebs":
			return badEBS, nil
		}
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "persistentvolumes"}, name)
	}
	va := func(pv *string, inline *v1.PersistentVolumeSpec) *storagev1.VolumeAttachment {
		return &storagev1.VolumeAttachment{Spec: storagev1.VolumeAttachmentSpec{
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: pv, InlineVolumeSpec: inline}}}
	}
	src, pv, err := sourceOf(context.Background(), va(ptr.To("pv1"), nil), getPV)
	if err != nil || pv != csiPV || src.pvName != "pv1" || src.csi().VolumeHandle != "h" {
		t.Errorf("PV source: %+v %v %v", src, pv, err)
	}
	src, pv, err = sourceOf(context.Background(), va(nil, pvSpec(nil, false, "")), getPV)
	if err != nil || pv != nil || src.pvName != "" || src.csi().VolumeHandle != "h" {
		t.Errorf("inline source: %+v %v %v", src, pv, err)
	}
	// A migrated in-tree PV is published with its CSI translation; the PV
	// returned (for the finalizer) is the stored one, unchanged.
	src, pv, err = sourceOf(context.Background(), va(ptr.To("ebs"), nil), getPV)
	if err != nil || pv != ebsPV || pv.Spec.CSI != nil || !src.migrated || src.csi().Driver != "ebs.csi.aws.com" ||
		src.csi().VolumeHandle != "vol-0abc" || src.csi().FSType != "xfs" {
		t.Errorf("in-tree PV source: %+v %v %v", src, pv, err)
	}
	for name, tc := range map[string]struct {
		va   *storagev1.VolumeAttachment
		want string
	}{
		"untranslatable": {va(ptr.To("bad-ebs"), nil), `PersistentVolume "bad-ebs"`},
		"both":           {va(ptr.To("pv1"), pvSpec(nil, false, "")), "both persistentVolumeName and inlineVolumeSpec"},
		"neither":        {va(nil, nil), "neither"},
		"missing PV":     {va(ptr.To("gone"), nil), `PersistentVolume "gone"`},
		"not CSI":        {va(ptr.To("pv2"), nil), "no in-tree source csi-translation-lib can translate"},
		"inline no CSI":  {va(nil, &v1.PersistentVolumeSpec{}), "inlineVolumeSpec has no csi"},
	} {
		_, _, err := sourceOf(context.Background(), tc.va, getPV)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, tc.want)
		}
	}
	_, _, err = sourceOf(context.Background(), va(ptr.To("gone"), nil), getPV)
	if !apierrors.IsNotFound(errors.Unwrap(err)) {
		t.Errorf("missing PV error does not wrap NotFound: %v", err)
	}
}

func TestPublishedTo(t *testing.T) {
	published := map[string][]string{"v1": {"n1", "n2"}, "v2": nil}
	if !publishedTo(published, "v1", "n2") || publishedTo(published, "v1", "n3") ||
		publishedTo(published, "v2", "n1") || publishedTo(published, "v9", "n1") {
		t.Error("publishedTo answered wrongly")
	}
}
