package provisioner

import (
	"context"
	"time"

	"github.com/kubernetes-csi/csi-lib-utils/slowset"
)

// slowRetry holds claims whose CreateVolume the driver refused with
// InvalidArgument: retrying the same request at the usual backoff only adds
// load, so it waits --retry-interval-max, unless the claim's StorageClass was
// replaced (another UID), as sig-storage-lib-external-provisioner does.
type slowRetry struct{ set *slowset.SlowSet }

func newSlowRetry(interval time.Duration) *slowRetry {
	return &slowRetry{set: slowset.NewSlowSet(interval)}
}

func (s *slowRetry) run(ctx context.Context) { s.set.Run(ctx.Done()) }

// forget drops claim (provisioned or deleted).
func (s *slowRetry) forget(claimUID string) {
	if s != nil {
		s.set.Remove(claimUID)
	}
}

// mark starts the interval for claim.
func (s *slowRetry) mark(claimUID, classUID string) {
	if s == nil {
		return
	}
	s.set.Remove(claimUID)
	s.set.Add(claimUID, slowset.ObjectData{Timestamp: time.Now(), StorageClassUID: classUID})
}

// wait returns how long claim must still wait.
func (s *slowRetry) wait(claimUID, classUID string) (time.Duration, bool) {
	if s == nil {
		return 0, false
	}
	info, ok := s.set.Get(claimUID)
	if !ok {
		return 0, false
	}
	if info.StorageClassUID != classUID {
		s.set.Remove(claimUID)
		return 0, false
	}
	if d := s.set.TimeRemaining(claimUID); d > 0 {
		return d, true
	}
	return 0, false
}
