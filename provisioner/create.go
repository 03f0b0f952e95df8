package provisioner

import (
	"context"
	"errors"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/internal/edit"
)

// outcome of a failed CreateVolume, as the sidecar classifies it.
type outcome int

const (
	// final: the driver is not working on the volume; retrying is safe and
	// nothing can be left behind.
	final outcome = iota
	// inBackground: the driver may still be creating it (timeout, connection
	// lost, Aborted); we must call again with the same name until a final
	// answer, even if the PVC is deleted meanwhile.
	inBackground
	// reschedule: the selected node cannot get the volume (ResourceExhausted
	// with topology and delayed binding); the scheduler should pick again.
	reschedule
)

func classify(err error, mayReschedule bool) outcome {
	st, ok := status.FromError(err)
	if !ok {
		return inBackground // failed before or outside gRPC: be safe
	}
	switch st.Code() {
	case codes.ResourceExhausted:
		if mayReschedule {
			return reschedule
		}
		return final
	case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable, codes.Aborted:
		return inBackground
	}
	return final
}

type rescheduleError struct{ err error }

func (r rescheduleError) Error() string { return r.err.Error() }

// createVolume calls CreateVolume and checks the answer. It keeps the claim in
// inFlight whenever a backend volume may exist without a PV.
func (c *Controller) createVolume(ctx context.Context, key string, claim *v1.PersistentVolumeClaim, p *plan, nodeSelected bool) (*csi.Volume, int64, error) {
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	resp, err := c.d.CSI.CreateVolume(cctx, p.req)
	if err != nil {
		switch classify(err, c.topology && nodeSelected) {
		case inBackground:
			c.inFlight.mayBeCreating(key, claim, p.req.AccessibilityRequirements)
			return nil, 0, fmt.Errorf("CreateVolume %s may still be in progress, will call again with the same name: %w", p.pvName, err)
		case reschedule:
			c.inFlight.createFailed(key, claim.UID)
			return nil, 0, rescheduleError{fmt.Errorf("CreateVolume %s: %w", p.pvName, err)}
		default:
			c.inFlight.createFailed(key, claim.UID)
			return nil, 0, fmt.Errorf("CreateVolume %s: %w", p.pvName, err)
		}
	}
	c.inFlight.setPending(key, claim) // created; not safe to forget until a PV records it
	vol := resp.GetVolume()
	if vol.GetVolumeId() == "" {
		return nil, 0, fmt.Errorf("CreateVolume %s: driver returned no volume_id", p.pvName)
	}
	requested := p.req.GetCapacityRange().GetRequiredBytes()
	capacity := vol.GetCapacityBytes()
	var problem error
	switch {
	case capacity == 0:
		capacity = requested // "unknown" per the CSI spec; a PV needs a size
	case capacity < requested:
		problem = fmt.Errorf("created volume capacity %d is less than the requested %d", capacity, requested)
	}
	if problem == nil && p.req.GetVolumeContentSource() != nil && vol.GetContentSource() == nil {
		problem = fmt.Errorf("driver returned no content_source for a volume requested from a data source")
	}
	if problem != nil {
		if err := c.cleanup(ctx, vol.GetVolumeId(), p.req.GetSecrets()); err != nil {
			return nil, 0, fmt.Errorf("%w; deleting the unusable volume %s failed, will retry: %v", problem, vol.GetVolumeId(), err)
		}
		c.inFlight.donePending(key)
		return nil, 0, problem
	}
	return vol, capacity, nil
}

// cleanup deletes a volume that CreateVolume returned but we cannot use.
func (c *Controller) cleanup(ctx context.Context, volumeID string, secrets map[string]string) error {
	c.d.Steps.Trigger(ctx, "the created volume does not match the claim: deleting it again")
	cctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	_, err := c.d.CSI.DeleteVolume(cctx, &csi.DeleteVolumeRequest{VolumeId: volumeID, Secrets: secrets})
	return err
}

// savePV creates the PV. If it exists already (a previous attempt's create
// succeeded but its answer was lost), it is ours when its claimRef names this
// claim's UID.
func (c *Controller) savePV(ctx context.Context, claim *v1.PersistentVolumeClaim, pv *v1.PersistentVolume) error {
	_, err := c.d.Kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		existing, gerr := c.d.Kube.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("creating PersistentVolume %s: %w (and reading it: %v)", pv.Name, err, gerr)
		}
		if existing.Spec.ClaimRef == nil || existing.Spec.ClaimRef.UID != claim.UID {
			return fmt.Errorf("PersistentVolume %s already exists and is not bound to this claim (UID %s)", pv.Name, claim.UID)
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("creating PersistentVolume %s: %w", pv.Name, err)
	}
	c.inFlight.createdPV(pv.Name, claim.UID)
	return nil
}

// reschedule reports err and removes the selected-node annotation, which
// tells the scheduler to choose a node again. It only removes the node we
// saw (JSON patch test), never a choice the scheduler made meanwhile.
func (c *Controller) reschedule(ctx context.Context, claim *v1.PersistentVolumeClaim, sc *storagev1.StorageClass, cause error) error {
	c.fail(ctx, claim, sc, cause)
	node, ok := claim.Annotations[annSelectedNode]
	if !ok {
		return cause
	}
	c.d.Steps.Trigger(ctx, fmt.Sprintf("node %q cannot get this volume: removing %s so the scheduler picks another node", node, annSelectedNode))
	err := edit.RemoveAnnotationIf(ctx, c.d.Kube.CoreV1().PersistentVolumeClaims(claim.Namespace), claim, annSelectedNode, node)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return errors.Join(cause, fmt.Errorf("removing %s from the PVC: %w", annSelectedNode, err))
	}
	klog.FromContext(ctx).Info("Asked the scheduler to pick another node", "PVC", klog.KObj(claim), "node", node, "err", cause)
	c.forget(claim.UID)
	return nil
}
