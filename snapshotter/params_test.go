package snapshotter

import (
	"maps"
	"strings"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSnapshotName(t *testing.T) {
	const uid = "0b3c1f2e-9a7d-4c55-8e21-6f0a9d3b7c44"
	cases := []struct {
		prefix  string
		length  int
		uid     string
		want    string
		wantErr string
	}{
		{"snapshot", -1, uid, "snapshot-" + uid, ""},
		{"snap", 8, uid, "snap-0b3c1f2e", ""},
		{"snap", 32, uid, "snap-0b3c1f2e9a7d4c558e216f0a9d3b7c44", ""},
		{"snap", 33, uid, "", "longer than the VolumeSnapshot UID"},
		{"snapshot", -1, "", "", "spec.volumeSnapshotRef.uid is empty"},
	}
	for _, tc := range cases {
		got, err := snapshotName(tc.prefix, tc.length, tc.uid)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("snapshotName(%q, %d, %q) error = %v, want one containing %q", tc.prefix, tc.length, tc.uid, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("snapshotName(%q, %d, %q) = %q, %v; want %q", tc.prefix, tc.length, tc.uid, got, err, tc.want)
		}
	}
}

func testContent(name string) *snapv1.VolumeSnapshotContent {
	vol := "vol-1"
	class := "class-1"
	return &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: snapv1.VolumeSnapshotContentSpec{
			Driver:                  "test.csi.io",
			DeletionPolicy:          snapv1.VolumeSnapshotContentDelete,
			Source:                  snapv1.VolumeSnapshotContentSource{VolumeHandle: &vol},
			VolumeSnapshotClassName: &class,
			VolumeSnapshotRef:       v1.ObjectReference{Name: "snap-a", Namespace: "ns-a", UID: "uid-a"},
		},
	}
}

func TestCreateParameters(t *testing.T) {
	class := &snapv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: "class-1"},
		Parameters: map[string]string{
			"tier":                          "gold",
			ParamSnapshotterSecretName:      "s",
			ParamSnapshotterSecretNamespace: "ns",
			ParamSnapshotterListSecretName:  "l",
			paramGroupSnapshotterSecretName: "g",
			"csi.storage.k8s.io.not-prefix": "kept", // no slash: not the reserved prefix
		},
	}
	content := testContent("content-1")

	got, err := createParameters(class, content, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"tier": "gold", "csi.storage.k8s.io.not-prefix": "kept"}
	if !maps.Equal(got, want) {
		t.Errorf("parameters = %v, want %v", got, want)
	}

	got, err = createParameters(class, content, true)
	if err != nil {
		t.Fatal(err)
	}
	want[ParamVolumeSnapshotName] = "snap-a"
	want[ParamVolumeSnapshotNamespace] = "ns-a"
	want[ParamVolumeSnapshotContentName] = "content-1"
	if !maps.Equal(got, want) {
		t.Errorf("parameters with extra metadata = %v, want %v", got, want)
	}
	if _, ok := class.Parameters[ParamVolumeSnapshotName]; ok {
		t.Error("createParameters modified the class's parameters")
	}

	class.Parameters["csi.storage.k8s.io/typo-secret-name"] = "x"
	if _, err := createParameters(class, content, false); err == nil || !strings.Contains(err.Error(), "csi.storage.k8s.io/typo-secret-name") {
		t.Errorf("unknown reserved key: error = %v, want one naming the key", err)
	}
}

func TestBackendHandleOnlyFromStatus(t *testing.T) {
	h := "snap-1"
	pre := &snapv1.VolumeSnapshotContent{Spec: snapv1.VolumeSnapshotContentSpec{
		Source: snapv1.VolumeSnapshotContentSource{SnapshotHandle: &h}}}
	if got := backendHandle(pre); got != "" {
		t.Errorf("unconfirmed pre-provisioned content: backendHandle = %q, want nothing to delete", got)
	}
	pre.Status = &snapv1.VolumeSnapshotContentStatus{SnapshotHandle: &h}
	if got := backendHandle(pre); got != h {
		t.Errorf("confirmed content: backendHandle = %q, want %q", got, h)
	}
	group := "group-1"
	pre.Status.VolumeGroupSnapshotHandle = &group
	if got := backendHandle(pre); got != "" {
		t.Errorf("group member: backendHandle = %q, want nothing (deleted with the group)", got)
	}
}
