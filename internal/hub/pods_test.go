package hub

import (
	"context"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func fullPod(name string, phase v1.PodPhase) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), ResourceVersion: "7",
			Labels: map[string]string{"app": "db"}, Annotations: map[string]string{"big": string(make([]byte, 4096))}},
		Spec: v1.PodSpec{
			Containers: []v1.Container{{Name: "c", Image: "busybox", Env: []v1.EnvVar{{Name: "A", Value: "b"}},
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}}}},
			Volumes: []v1.Volume{
				{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "db-data"}}},
				{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{}}},
				{Name: "scratch", VolumeSource: v1.VolumeSource{Ephemeral: &v1.EphemeralVolumeSource{
					VolumeClaimTemplate: &v1.PersistentVolumeClaimTemplate{}}}},
			},
		},
		Status: v1.PodStatus{Phase: phase, Conditions: []v1.PodCondition{{Type: v1.PodReady}}},
	}
}

// A Pod is reduced to what the in-use check and the node watcher read:
// name, namespace, resourceVersion, node, phase and the claim keys (a generic
// ephemeral volume by its claim's name <pod>-<volume>).
func TestSlimPodKeepsOnlyClaims(t *testing.T) {
	full := fullPod("db-0", v1.PodRunning)
	full.Spec.NodeName = "node-1"
	obj, err := SlimPod(full)
	if err != nil {
		t.Fatal(err)
	}
	pod := obj.(*PodUse)
	if pod.Name != "db-0" || pod.Namespace != "ns" || pod.ResourceVersion != "7" || pod.Phase != v1.PodRunning || pod.NodeName != "node-1" {
		t.Errorf("identity, node or phase lost: %+v", pod)
	}
	if pod.GetLabels() != nil || pod.GetAnnotations() != nil || pod.GetUID() != "" {
		t.Errorf("slim pod keeps more than it needs: %+v", pod)
	}
	if want := []string{"ns/db-data", "ns/db-0-scratch"}; !slices.Equal(pod.ClaimKeys, want) {
		t.Errorf("claims = %v, want %v", pod.ClaimKeys, want)
	}
	cp := pod.DeepCopyObject().(*PodUse)
	cp.ClaimKeys[0] = "changed"
	if pod.ClaimKeys[0] != "ns/db-data" {
		t.Error("DeepCopyObject shares the claim keys")
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/db-0", Obj: pod}
	if got, _ := SlimPod(tomb); got != tomb {
		t.Errorf("a tombstone must pass through unchanged, got %#v", got)
	}
}

// A terminated Pod uses no claim (upstream's isPodTerminated); a pending or
// running one uses all of its claims.
func TestClaimsOfPodByPhase(t *testing.T) {
	for _, tc := range []struct {
		phase v1.PodPhase
		want  []string
	}{
		{v1.PodPending, []string{"ns/db-data", "ns/db-0-scratch"}},
		{v1.PodRunning, []string{"ns/db-data", "ns/db-0-scratch"}},
		{v1.PodUnknown, []string{"ns/db-data", "ns/db-0-scratch"}},
		{v1.PodSucceeded, nil},
		{v1.PodFailed, nil},
	} {
		slim, _ := SlimPod(fullPod("db-0", tc.phase))
		got, _ := ClaimsOfPod(slim)
		if !slices.Equal(got, tc.want) {
			t.Errorf("phase %s: claims %v, want %v", tc.phase, got, tc.want)
		}
	}
}

// The informer's list hands out slim Pods; its watch filter slims Pods and
// keeps a bookmark's resourceVersion and annotation (initial-events-end ends
// a streaming list), all as the informer's type.
func TestSlimPodInformerListAndWatch(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(fullPod("db-0", v1.PodRunning))
	list, err := listSlimPods(ctx, client, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("listSlimPods = %v, %v", list, err)
	}
	if p := list.Items[0]; p.GetAnnotations() != nil || p.Name != "db-0" || len(p.ClaimKeys) != 2 {
		t.Errorf("listed Pod is not slim: %+v", p)
	}
	fw := watch.NewFake()
	bookmark := &v1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}
	filtered := watch.Filter(fw, slimEvent)
	go func() {
		fw.Add(fullPod("db-1", v1.PodPending))
		fw.Action(watch.Bookmark, bookmark)
	}()
	if ev := <-filtered.ResultChan(); ev.Object.(*PodUse).Name != "db-1" || len(ev.Object.(*PodUse).ClaimKeys) != 2 {
		t.Errorf("watched Pod is not slim: %+v", ev.Object)
	}
	// The reflector drops events whose object is not of the informer's type.
	if ev := <-filtered.ResultChan(); ev.Object.(*PodUse).GetAnnotations()[metav1.InitialEventsAnnotationKey] != "true" ||
		ev.Object.(*PodUse).ResourceVersion != "9" {
		t.Errorf("bookmark lost its annotation or resourceVersion: %+v", ev.Object)
	}
	filtered.Stop()
}
