package capacity

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func controlledBy(kind, name string) []metav1.OwnerReference {
	return []metav1.OwnerReference{
		{APIVersion: "v1", Kind: "Other", Name: "not-the-controller", UID: "other"},
		{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID(name + "-uid"), Controller: ptr.To(true)},
	}
}

func TestOwnerOf(t *testing.T) {
	meta := func(name string, owners []metav1.OwnerReference) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name + "-uid"), OwnerReferences: owners}
	}
	kube := kubefake.NewClientset(
		&v1.Pod{ObjectMeta: meta("hub-0", controlledBy("ReplicaSet", "hub-rs"))},
		&appsv1.ReplicaSet{ObjectMeta: meta("hub-rs", controlledBy("Deployment", "hub"))},
		&appsv1.Deployment{ObjectMeta: meta("hub", nil)},
		&v1.Pod{ObjectMeta: meta("sts-0", controlledBy("StatefulSet", "sts"))},
		&appsv1.StatefulSet{ObjectMeta: meta("sts", nil)},
		&v1.Pod{ObjectMeta: meta("ds-x", controlledBy("DaemonSet", "ds"))},
		&appsv1.DaemonSet{ObjectMeta: meta("ds", nil)},
		&v1.Pod{ObjectMeta: meta("job-x", controlledBy("Job", "job"))},
		&v1.Pod{ObjectMeta: meta("orphan-rs", controlledBy("ReplicaSet", "gone"))},
	)
	for _, tc := range []struct {
		pod      string
		level    int
		wantKind string
		wantName string
		wantErr  string
	}{
		{pod: "hub-0", level: 0, wantKind: "Pod", wantName: "hub-0"},
		{pod: "hub-0", level: 1, wantKind: "ReplicaSet", wantName: "hub-rs"},
		{pod: "hub-0", level: 2, wantKind: "Deployment", wantName: "hub"},
		{pod: "hub-0", level: 3, wantErr: "Deployment ns/hub has no controlling owner (level 3)"},
		{pod: "sts-0", level: 1, wantKind: "StatefulSet", wantName: "sts"},
		{pod: "sts-0", level: 2, wantErr: "StatefulSet ns/sts has no controlling owner (level 2)"},
		{pod: "ds-x", level: 2, wantErr: "DaemonSet ns/ds has no controlling owner (level 2)"},
		{pod: "job-x", level: 2, wantErr: "cannot follow owner Job job beyond level 1"},
		{pod: "orphan-rs", level: 2, wantErr: `replicasets.apps "gone" not found`},
		{pod: "", level: 0, wantErr: "POD_NAME is not set"},
		{pod: "missing", level: 0, wantErr: `pods "missing" not found`},
	} {
		ref, err := ownerOf(t.Context(), kube, "ns", tc.pod, tc.level)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("pod %q level %d: error %v, want one with %q", tc.pod, tc.level, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("pod %q level %d: %v", tc.pod, tc.level, err)
			continue
		}
		if ref.Kind != tc.wantKind || ref.Name != tc.wantName || ref.UID != types.UID(tc.wantName+"-uid") || !ptr.Deref(ref.Controller, false) {
			t.Errorf("pod %q level %d: owner %+v, want controller %s %s", tc.pod, tc.level, ref, tc.wantKind, tc.wantName)
		}
	}
}
