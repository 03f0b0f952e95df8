package snapshotter

import (
	"strings"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSnapshotterSecretRef(t *testing.T) {
	c := testContent("c")
	if ref, err := snapshotterSecretRef(c); ref != nil || err != nil {
		t.Errorf("no annotations: got %v, %v; want nil, nil", ref, err)
	}
	c.Annotations = map[string]string{AnnDeletionSecretName: "creds", AnnDeletionSecretNamespace: "storage"}
	ref, err := snapshotterSecretRef(c)
	if err != nil || ref == nil || ref.Name != "creds" || ref.Namespace != "storage" {
		t.Errorf("both annotations: got %v, %v", ref, err)
	}
	c.Annotations = map[string]string{AnnDeletionSecretName: "creds"}
	if _, err := snapshotterSecretRef(c); err == nil || !strings.Contains(err.Error(), AnnDeletionSecretNamespace) {
		t.Errorf("namespace missing: error = %v, want one naming %s", err, AnnDeletionSecretNamespace)
	}
}

func TestListSecretRef(t *testing.T) {
	class := &snapv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "cls"}}
	if ref, err := listSecretRef(class, "content-1"); ref != nil || err != nil {
		t.Errorf("no parameters: got %v, %v", ref, err)
	}
	class.Parameters = map[string]string{
		ParamSnapshotterListSecretName:      "list-${volumesnapshotcontent.name}",
		ParamSnapshotterListSecretNamespace: "storage",
	}
	ref, err := listSecretRef(class, "content-1")
	if err != nil || ref.Name != "list-content-1" || ref.Namespace != "storage" {
		t.Errorf("template: got %v, %v; want storage/list-content-1", ref, err)
	}
	class.Parameters[ParamSnapshotterListSecretName] = "${volumesnapshot.name}"
	if _, err := listSecretRef(class, "content-1"); err == nil || !strings.Contains(err.Error(), "${volumesnapshot.name}") {
		t.Errorf("unknown token: error = %v", err)
	}
	class.Parameters[ParamSnapshotterListSecretName] = "ok"
	class.Parameters[ParamSnapshotterListSecretNamespace] = "Not_A_Namespace"
	if _, err := listSecretRef(class, "content-1"); err == nil || !strings.Contains(err.Error(), "not a valid namespace") {
		t.Errorf("bad namespace: error = %v", err)
	}
	delete(class.Parameters, ParamSnapshotterListSecretNamespace)
	if _, err := listSecretRef(class, "content-1"); err == nil {
		t.Error("name without namespace: no error")
	}
}
