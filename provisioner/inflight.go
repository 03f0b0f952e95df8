package provisioner

import (
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// inFlight is everything the provisioner keeps in memory between syncs, in
// one place: what is in flight per claim (as the sidecar's library keeps
// claimsInProgress) and the two bridges over the PV informer's lag. None of
// it survives a restart, and none of it needs to: after a restart the same
// CreateVolume name finds the same backend volume, and the informers start in
// step with the API server. Each entry only keeps a volume from leaking,
// saves a call or an event, or keeps a retry asking the same question.
//
//   - pending (queue key -> claim): a CreateVolume may have created a backend
//     volume that no PV records yet (timeout, Unavailable, PV create failed).
//     Such a claim is provisioned to the end even if the PVC is deleted
//     meanwhile, so the PV (then Released and deleted) carries the volume.
//     Its data source stays protected meanwhile (sourceGuard.finishing).
//   - per claim UID, dropped by forget once the claim is provisioned or gone:
//     topology, the requirement of a CreateVolume that may still be running,
//     so its retry asks for the same zone even if node labels changed
//     meanwhile (external-provisioner v6 does the same); announced, the
//     claim got its Provisioning event, so retries do not repeat it (events
//     share the API budget with real work); failure, the last
//     ProvisioningFailed event, so an unchanged failure is reported at most
//     once per failureEventInterval.
//   - created (PV name -> claim UID): PVs this process created that the
//     informer has not delivered yet, so a PVC update arriving first does
//     not cause a second CreateVolume.
//   - finished (PV UID): PVs whose deletion this process completed, so a
//     stale informer copy does not cause a second DeleteVolume and patch.
type inFlight struct {
	mu       sync.Mutex
	pending  map[string]*v1.PersistentVolumeClaim
	claims   map[types.UID]*claimMemory
	created  map[string]types.UID
	finished map[types.UID]bool
}

// claimMemory is what is remembered of one claim until it is provisioned or gone.
type claimMemory struct {
	topology    *csi.TopologyRequirement
	hasTopology bool // topology was asked (it may be nil)
	announced   bool
	failure     *failureNote
}

type failureNote struct {
	msg  string
	when time.Time
}

// The zero inFlight is empty and ready: its maps are made on first write.

// claim returns uid's memory, made on first use; call with mu held.
func (f *inFlight) claim(uid types.UID) *claimMemory {
	if f.claims == nil {
		f.claims = map[types.UID]*claimMemory{}
	}
	m := f.claims[uid]
	if m == nil {
		m = &claimMemory{}
		f.claims[uid] = m
	}
	return m
}

// pendingClaim returns the claim whose volume may exist without a PV, by queue key.
func (f *inFlight) pendingClaim(key string) (*v1.PersistentVolumeClaim, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	claim, ok := f.pending[key]
	return claim, ok
}

// isPending: a backend volume of the claim under key may exist without a PV.
func (f *inFlight) isPending(key string) bool {
	_, ok := f.pendingClaim(key)
	return ok
}

// setPending records that claim's volume may exist without a PV.
func (f *inFlight) setPending(key string, claim *v1.PersistentVolumeClaim) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending == nil {
		f.pending = map[string]*v1.PersistentVolumeClaim{}
	}
	f.pending[key] = claim
}

// mayBeCreating records that claim's CreateVolume, which asked for topology,
// may still be running in the backend: its volume may exist without a PV, and
// a retry asks for the same topology.
func (f *inFlight) mayBeCreating(key string, claim *v1.PersistentVolumeClaim, topology *csi.TopologyRequirement) {
	f.setPending(key, claim)
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.claim(claim.UID)
	m.topology, m.hasTopology = topology, true
}

// donePending: no volume of the claim under key can exist without a PV.
func (f *inFlight) donePending(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pending, key)
}

// createFailed: the claim's CreateVolume failed for good, nothing is being
// created; its next attempt computes its topology afresh.
func (f *inFlight) createFailed(key string, uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pending, key)
	if m := f.claims[uid]; m != nil {
		m.topology, m.hasTopology = nil, false
	}
}

// pendingClaims returns the claims whose volumes may exist without a PV.
func (f *inFlight) pendingClaims() []*v1.PersistentVolumeClaim {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*v1.PersistentVolumeClaim, 0, len(f.pending))
	for _, claim := range f.pending {
		out = append(out, claim)
	}
	return out
}

// askedTopology is the requirement of a CreateVolume of uid that may still run.
func (f *inFlight) askedTopology(uid types.UID) (*csi.TopologyRequirement, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := f.claims[uid]; m != nil && m.hasTopology {
		return m.topology, true
	}
	return nil, false
}

// announce reports whether uid's Provisioning event is still to be sent, and
// marks it sent.
func (f *inFlight) announce(uid types.UID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.claim(uid)
	first := !m.announced
	m.announced = true
	return first
}

// reportFailure reports whether msg is to be sent as uid's failure event now:
// not when the same message was sent less than failureEventInterval ago.
func (f *inFlight) reportFailure(uid types.UID, msg string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.claim(uid)
	if last := m.failure; last != nil && last.msg == msg && now.Sub(last.when) < failureEventInterval {
		return false
	}
	m.failure = &failureNote{msg: msg, when: now}
	return true
}

// forget drops what is remembered of claim uid (not its pending volume).
func (f *inFlight) forget(uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.claims, uid)
}

// createdPV records that this process created PV name for claim uid.
func (f *inFlight) createdPV(name string, uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.created == nil {
		f.created = map[string]types.UID{}
	}
	f.created[name] = uid
}

// createdFor reports whether this process created PV name for claim uid and
// the informer may not have it yet.
func (f *inFlight) createdFor(name string, uid types.UID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	got, ok := f.created[name]
	return ok && got == uid
}

// seenPV: the informer delivered PV name.
func (f *inFlight) seenPV(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.created, name)
}

// finishedPV records that this process completed the deletion of PV uid.
func (f *inFlight) finishedPV(uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.finished == nil {
		f.finished = map[types.UID]bool{}
	}
	f.finished[uid] = true
}

// deletedHere reports whether this process completed the deletion of PV uid.
func (f *inFlight) deletedHere(uid types.UID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.finished[uid]
}

// goneVolume: PV name (uid) left the informer.
func (f *inFlight) goneVolume(name string, uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.created, name)
	delete(f.finished, uid)
}
