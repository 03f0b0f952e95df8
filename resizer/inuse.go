package resizer

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/hub"
)

// claimUsers is external-resizer's --handle-volume-inuse-error: a driver that
// cannot expand a volume in use answers ControllerExpandVolume with
// FailedPrecondition, and the claim is not tried again while a Pod that is not
// terminated mounts it (external-resizer pkg/controller/inuse_pvc_store.go).
//
// The sidecar keeps every Pod of the cluster whole in its informer, which is
// what makes resizers OOM in large clusters. Here the hub's slim Pod
// informer (hub.PodClaims) keeps only what the check reads, indexed by claim.
type claimUsers struct {
	pods cache.SharedIndexInformer
	// freed is called with a claim's key when the last Pod using a claim that
	// failed with an in-use error goes away, so it is retried at once rather
	// than at the end of its backoff.
	freed func(key string)

	mu sync.Mutex
	// inUseErrors: PVC key -> UID of the PVC whose last expansion got
	// FailedPrecondition (the UID, as upstream, so a new claim of the same
	// name starts clean).
	inUseErrors map[string]types.UID
}

// watchClaimUsers registers the handlers on the hub's slim Pod informer; the
// hub starts and syncs it with the others. It is the process's one Pod watch,
// there only when a controller needs it (here: the resizer with the flag on).
func watchClaimUsers(d Deps, freed func(key string)) (*claimUsers, error) {
	inf, err := d.PodClaims()
	if err != nil {
		return nil, err
	}
	u := &claimUsers{pods: inf, freed: freed, inUseErrors: map[string]types.UID{}}
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, _ any) { u.released(oldObj) },
		DeleteFunc: u.released,
	})
	if err != nil {
		return nil, err
	}
	klog.InfoS("Watching Pods for claims in use (--handle-volume-inuse-error)", "controller", Name, "driver", d.Driver)
	return u, nil
}

// inUse reports whether a Pod that is not terminated mounts the claim key.
func (u *claimUsers) inUse(key string) bool {
	pods, err := u.pods.GetIndexer().ByIndex(hub.ClaimIndex, key)
	return err == nil && len(pods) > 0
}

// blocked is upstream's hasInUseErrors && checkForUse: the claim's last
// expansion failed because it was in use, and it still is.
func (u *claimUsers) blocked(pvc *v1.PersistentVolumeClaim) bool {
	key := pvc.Namespace + "/" + pvc.Name
	u.mu.Lock()
	uid, failed := u.inUseErrors[key]
	u.mu.Unlock()
	return failed && uid == pvc.UID && u.inUse(key)
}

func (u *claimUsers) setInUseError(pvc *v1.PersistentVolumeClaim) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.inUseErrors[pvc.Namespace+"/"+pvc.Name] = pvc.UID
}

func (u *claimUsers) clear(key string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.inUseErrors, key)
}

// released runs after the informer has updated its index for a changed or
// deleted Pod: each claim the Pod used that waits for its users to go and is
// no longer used is handed to freed.
func (u *claimUsers) released(oldObj any) {
	if t, ok := oldObj.(cache.DeletedFinalStateUnknown); ok {
		oldObj = t.Obj
	}
	keys, _ := hub.ClaimsOfPod(oldObj)
	for _, key := range keys {
		u.mu.Lock()
		_, waiting := u.inUseErrors[key]
		u.mu.Unlock()
		if waiting && !u.inUse(key) {
			u.freed(key)
		}
	}
}
