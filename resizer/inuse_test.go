package resizer

import (
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// blocked needs both an in-use error for this very claim (same UID) and a Pod
// using it; released reports the claim once its last Pod is gone.
func TestClaimUsersBlockedAndReleased(t *testing.T) {
	inf := cache.NewSharedIndexInformer(nil, &hub.PodUse{}, 0, cache.Indexers{hub.ClaimIndex: hub.ClaimsOfPod})
	var freed []string
	u := &claimUsers{pods: inf, freed: func(k string) { freed = append(freed, k) }, inUseErrors: map[string]types.UID{}}
	pvc := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "db-data", Namespace: "ns", UID: "pvc-1"}}
	pod, _ := hub.SlimPod(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "ns"}, Spec: v1.PodSpec{
		Volumes: []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "db-data"}}}}}})
	if err := inf.GetIndexer().Add(pod); err != nil {
		t.Fatal(err)
	}
	if u.blocked(pvc) {
		t.Error("blocked without an in-use error")
	}
	u.setInUseError(pvc)
	if !u.blocked(pvc) {
		t.Error("not blocked with an in-use error and a Pod using the claim")
	}
	other := pvc.DeepCopy()
	other.UID = "pvc-2"
	if u.blocked(other) {
		t.Error("a new claim of the same name inherits the old one's in-use error")
	}
	u.released(pod)
	if len(freed) != 0 {
		t.Errorf("freed %v while the Pod still uses the claim", freed)
	}
	if err := inf.GetIndexer().Delete(pod); err != nil {
		t.Fatal(err)
	}
	u.released(cache.DeletedFinalStateUnknown{Key: "ns/db-0", Obj: pod})
	if !slices.Equal(freed, []string{"ns/db-data"}) {
		t.Errorf("freed = %v, want [ns/db-data]", freed)
	}
	if u.blocked(pvc) {
		t.Error("still blocked with no Pod using the claim")
	}
}
