package hub

import (
	"context"
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestReadSecret(t *testing.T) {
	kube := fake.NewClientset(&v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "kube-system"},
		Data:       map[string][]byte{"user": []byte("admin"), "key": []byte("s3cr3t")},
	})
	got, err := ReadSecret(context.Background(), kube, &v1.SecretReference{Name: "creds", Namespace: "kube-system"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, map[string]string{"user": "admin", "key": "s3cr3t"}) {
		t.Errorf("ReadSecret = %v", got)
	}
	if got, err := ReadSecret(context.Background(), kube, nil); got != nil || err != nil {
		t.Errorf("nil ref: %v, %v; want nil, nil", got, err)
	}
	_, err = ReadSecret(context.Background(), kube, &v1.SecretReference{Name: "gone", Namespace: "kube-system"})
	if err == nil || !strings.Contains(err.Error(), "kube-system/gone") {
		t.Errorf("missing secret: error %v, want one naming it", err)
	}
	if n := len(kube.Actions()); n != 2 {
		t.Errorf("%d API calls, want 2 (one GET per resolved secret, none for nil)", n)
	}
}
