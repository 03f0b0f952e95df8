package snapshotter

import (
	"context"
	"strings"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
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

func TestCredentials(t *testing.T) {
	kube := kubefake.NewClientset(&v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "storage"},
		Data:       map[string][]byte{"password": []byte("hunter2")},
	})
	got, err := credentials(context.Background(), kube, &v1.SecretReference{Name: "creds", Namespace: "storage"})
	if err != nil || got["password"] != "hunter2" {
		t.Errorf("credentials = %v, %v", got, err)
	}
	if got, err := credentials(context.Background(), kube, nil); got != nil || err != nil {
		t.Errorf("nil ref: %v, %v", got, err)
	}
	_, err = credentials(context.Background(), kube, &v1.SecretReference{Name: "missing", Namespace: "storage"})
	if err == nil || !strings.Contains(err.Error(), "storage/missing") {
		t.Errorf("missing secret: error = %v, want one naming storage/missing", err)
	}
}
