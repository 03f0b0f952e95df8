package provisioner

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func claimWith(modes []v1.PersistentVolumeAccessMode, mode *v1.PersistentVolumeMode) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "ns1", UID: "1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
		Spec:       v1.PersistentVolumeClaimSpec{AccessModes: modes, VolumeMode: mode},
	}
}

func TestVolumeName(t *testing.T) {
	uid := "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	for _, tc := range []struct {
		prefix string
		length int
		want   string
		err    bool
	}{
		{"pvc", -1, "pvc-" + uid, false},
		{"csi", 8, "csi-1b4e28ba", false},
		{"pvc", 16, "pvc-1b4e28ba2fa111d2", false},
		{"", -1, "", true},
	} {
		got, err := volumeName(tc.prefix, uid, tc.length)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("volumeName(%q, %d) = %q, %v; want %q (error %v)", tc.prefix, tc.length, got, err, tc.want, tc.err)
		}
	}
	if _, err := volumeName("pvc", "", -1); err == nil {
		t.Error("volumeName without UID: want error")
	}
}

func TestFSType(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		def    string
		want   string
		err    bool
	}{
		{map[string]string{keyFSType: "xfs"}, "ext4", "xfs", false},
		{map[string]string{"fsType": "ext3"}, "", "ext3", false},
		{map[string]string{}, "ext4", "ext4", false},
		{nil, "", "", false},
		{map[string]string{keyFSType: "xfs", "fstype": "ext4"}, "", "", true},
	} {
		got, err := fsTypeFor(tc.params, tc.def)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("fsTypeFor(%v, %q) = %q, %v; want %q (error %v)", tc.params, tc.def, got, err, tc.want, tc.err)
		}
	}
}

func TestVolumeCapabilities(t *testing.T) {
	block, fs := v1.PersistentVolumeBlock, v1.PersistentVolumeFilesystem
	type M = csi.VolumeCapability_AccessMode_Mode
	for _, tc := range []struct {
		name   string
		modes  []v1.PersistentVolumeAccessMode
		snmw   bool
		want   []M
		errSub string
	}{
		{"RWO", []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}, false, []M{csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}, ""},
		{"RWO with SINGLE_NODE_MULTI_WRITER", []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}, true, []M{csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER}, ""},
		{"RWOP", []v1.PersistentVolumeAccessMode{v1.ReadWriteOncePod}, false, []M{csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}, ""},
		{"RWOP with SINGLE_NODE_MULTI_WRITER", []v1.PersistentVolumeAccessMode{v1.ReadWriteOncePod}, true, []M{csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER}, ""},
		{"ROX", []v1.PersistentVolumeAccessMode{v1.ReadOnlyMany}, false, []M{csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY}, ""},
		{"RWX", []v1.PersistentVolumeAccessMode{v1.ReadWriteMany}, false, []M{csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}, ""},
		{"RWO+ROX: one capability each", []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce, v1.ReadOnlyMany}, false,
			[]M{csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY}, ""},
		{"none", nil, false, nil, "accessModes is empty"},
		{"unknown", []v1.PersistentVolumeAccessMode{"ReadSometimes"}, false, nil, "accessModes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, vm := range []*v1.PersistentVolumeMode{nil, &fs, &block} {
				caps, err := volumeCapabilities(claimWith(tc.modes, vm), []string{"noatime"}, "xfs", tc.snmw)
				if tc.errSub != "" {
					if err == nil || !strings.Contains(err.Error(), tc.errSub) {
						t.Fatalf("error = %v, want one containing %q", err, tc.errSub)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(caps) != len(tc.want) {
					t.Fatalf("%d capabilities, want %d", len(caps), len(tc.want))
				}
				for i, c := range caps {
					if c.GetAccessMode().GetMode() != tc.want[i] {
						t.Errorf("capability %d mode %v, want %v", i, c.GetAccessMode().GetMode(), tc.want[i])
					}
					if vm == &block {
						if c.GetBlock() == nil || c.GetMount() != nil {
							t.Errorf("Block PVC got %v, want a block capability", c)
						}
					} else if m := c.GetMount(); m == nil || m.FsType != "xfs" || !reflect.DeepEqual(m.MountFlags, []string{"noatime"}) {
						t.Errorf("Filesystem PVC got %v, want mount{xfs, [noatime]}", c)
					}
				}
			}
		})
	}
}

func TestDriverParameters(t *testing.T) {
	in := map[string]string{
		"type":    "fast",
		keyFSType: "ext4",
		reservedPrefix + "provisioner-secret-name":      "s",
		reservedPrefix + "provisioner-secret-namespace": "ns",
		reservedPrefix + "node-stage-secret-name":       "s",
		reservedPrefix + "node-stage-secret-namespace":  "ns",
		reservedPrefix + "secret-name":                  "d",
		reservedPrefix + "secret-namespace":             "d",
		"csiProvisionerSecretName":                      "old-style", // deprecated keys are passed on, as upstream
	}
	got, err := driverParameters(in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"type": "fast", "csiProvisionerSecretName": "old-style"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("driverParameters = %v, want %v", got, want)
	}
	_, err = driverParameters(map[string]string{reservedPrefix + "fsType": "ext4"})
	if err == nil || !strings.Contains(err.Error(), `"csi.storage.k8s.io/fsType"`) {
		t.Errorf("unknown reserved key: error %v, want one naming the key", err)
	}
	if in["type"] != "fast" || len(in) != 9 {
		t.Error("driverParameters modified its input")
	}

	md := addExtraMetadata(want, claimWith(nil, nil), "pvc-x")
	if md[keyPVCName] != "data" || md[keyPVCNS] != "ns1" || md[keyPVName] != "pvc-x" || md["type"] != "fast" {
		t.Errorf("addExtraMetadata = %v", md)
	}
	if _, ok := want[keyPVName]; ok {
		t.Error("addExtraMetadata modified its input")
	}
}

func TestSecretRef(t *testing.T) {
	claim := claimWith(nil, nil)
	claim.Annotations = map[string]string{"team": "blue"}
	p := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	pn, pns := secretKeys(secretProvisioner)
	nn, nns := secretKeys(secretNodePublish)
	dn, dns := secretKeys("")
	for _, tc := range []struct {
		name   string
		kind   string
		params map[string]string
		want   *v1.SecretReference
		errSub string
	}{
		{"none", secretProvisioner, p("type", "x"), nil, ""},
		{"literal", secretProvisioner, p(pn, "creds", pns, "kube-system"), &v1.SecretReference{Name: "creds", Namespace: "kube-system"}, ""},
		{"templates", secretNodePublish, p(nn, "${pvc.name}-${pv.name}-${pvc.annotations['team']}", nns, "${pvc.namespace}"),
			&v1.SecretReference{Name: "data-pvc-1-blue", Namespace: "ns1"}, ""},
		{"namespace from pv name", secretNodePublish, p(nn, "x", nns, "${pv.name}"), &v1.SecretReference{Name: "x", Namespace: "pvc-1"}, ""},
		{"default secret", secretNodePublish, p(dn, "dflt", dns, "ns2"), &v1.SecretReference{Name: "dflt", Namespace: "ns2"}, ""},
		{"specific wins over default", secretNodePublish, p(dn, "dflt", dns, "ns2", nn, "mine", nns, "ns3"), &v1.SecretReference{Name: "mine", Namespace: "ns3"}, ""},
		{"deprecated key", secretProvisioner, p("csiProvisionerSecretName", "old", "csiProvisionerSecretNamespace", "ns4"), &v1.SecretReference{Name: "old", Namespace: "ns4"}, ""},
		{"both styles", secretProvisioner, p("csiProvisionerSecretName", "old", "csiProvisionerSecretNamespace", "ns4", pn, "a", pns, "b"), nil, "both"},
		{"name only", secretProvisioner, p(pn, "creds"), nil, "both must be set"},
		{"empty value", secretProvisioner, p(pn, "", pns, "x"), nil, "must not be empty"},
		{"pvc name not allowed in namespace", secretNodePublish, p(nn, "x", nns, "${pvc.name}"), nil, "invalid tokens"},
		{"unknown token", secretNodePublish, p(nn, "${pvc.uid}", nns, "x"), nil, "invalid tokens"},
		{"missing annotation", secretNodePublish, p(nn, "${pvc.annotations['other']}", nns, "x"), nil, "invalid tokens"},
		{"bad resolved name", secretNodePublish, p(nn, "${pvc.annotations['team']}_x", nns, "x"), nil, "not a valid secret name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := secretRef(tc.kind, tc.params, "pvc-1", claim)
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("error = %v, want one containing %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("secretRef = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err           error
		mayReschedule bool
		want          outcome
	}{
		{status.Error(codes.ResourceExhausted, "full"), true, reschedule},
		{status.Error(codes.ResourceExhausted, "full"), false, final},
		{status.Error(codes.DeadlineExceeded, ""), true, inBackground},
		{status.Error(codes.Unavailable, ""), false, inBackground},
		{status.Error(codes.Aborted, ""), false, inBackground},
		{status.Error(codes.Canceled, ""), false, inBackground},
		{status.Error(codes.InvalidArgument, ""), true, final},
		{status.Error(codes.Internal, ""), false, final},
		{errors.New("not grpc"), false, inBackground},
	} {
		if got := classify(tc.err, tc.mayReschedule); got != tc.want {
			t.Errorf("classify(%v, %v) = %v, want %v", tc.err, tc.mayReschedule, got, tc.want)
		}
	}
}
