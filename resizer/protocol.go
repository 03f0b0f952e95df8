package resizer

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"

	"github.com/csi-hub/csi-hub/internal/csiconn"
)

// Names external-resizer writes and reads; csi-hub must use the same ones so a
// cluster can switch between the two with no object migration.
const (
	// annResizer is set on a PVC by kube-controller-manager's expand
	// controller only for in-tree volumes migrated to CSI; for CSI volumes it
	// just emits ExternalExpanding. Like external-resizer, csi-hub therefore
	// goes by the PV's spec.csi.driver, and only re-examines a PVC when the
	// annotation changes.
	annResizer = "volume.kubernetes.io/storage-resizer"
	// annNodeExpansionNotRequired tells kubelet that a finished controller
	// expansion needs no NodeExpandVolume.
	annNodeExpansionNotRequired = "volume.kubernetes.io/node-expansion-not-required"
	// annPreResizeCapacity holds the PVC's capacity before an expansion whose
	// node part is pending (AnnotateFsResize).
	annPreResizeCapacity = "volume.alpha.kubernetes.io/pre-resize-capacity"
	// annModifySecretName / Namespace are set on the PV by external-provisioner
	// when the StorageClass names a controller-modify secret.
	annModifySecretName      = "volume.kubernetes.io/controller-modify-secret-name"
	annModifySecretNamespace = "volume.kubernetes.io/controller-modify-secret-namespace"

	// Parameters added by --extra-modify-metadata.
	paramPVCName      = "csi.storage.k8s.io/pvc/name"
	paramPVCNamespace = "csi.storage.k8s.io/pvc/namespace"
	paramPVName       = "csi.storage.k8s.io/pv/name"
)

// Event reasons.
const (
	reasonResizing               = "Resizing"
	reasonResizeFailed           = "VolumeResizeFailed"
	reasonResizeSuccessful       = "VolumeResizeSuccessful"
	reasonFileSystemResizeNeeded = "FileSystemResizeRequired"
	reasonModify                 = "VolumeModify"
	reasonModifyFailed           = "VolumeModifyFailed"
	reasonModifySuccessful       = "VolumeModifySuccessful"
	reasonModifyCancelled        = "VolumeModifyCanceled" // external-resizer pkg/util/events.go spelling
)

// resizeConditions are the PVC condition types the expansion protocol owns;
// every other condition is left alone.
var resizeConditions = map[v1.PersistentVolumeClaimConditionType]bool{
	v1.PersistentVolumeClaimResizing:                true,
	v1.PersistentVolumeClaimFileSystemResizePending: true,
	v1.PersistentVolumeClaimControllerResizeError:   true,
	v1.PersistentVolumeClaimNodeResizeError:         true,
}

// modifyConditions are the PVC condition types the modification protocol owns.
var modifyConditions = map[v1.PersistentVolumeClaimConditionType]bool{
	v1.PersistentVolumeClaimVolumeModifyingVolume:   true,
	v1.PersistentVolumeClaimVolumeModifyVolumeError: true,
}

// mergeConditions returns conds with the conditions of the types in owned
// replaced by set: a type in set replaces the old one; the other owned types
// are dropped, unless keepOld. Foreign conditions are kept as they are.
func mergeConditions(conds []v1.PersistentVolumeClaimCondition, owned map[v1.PersistentVolumeClaimConditionType]bool,
	keepOld bool, set ...v1.PersistentVolumeClaimCondition) []v1.PersistentVolumeClaimCondition {
	byType := map[v1.PersistentVolumeClaimConditionType]v1.PersistentVolumeClaimCondition{}
	for _, c := range set {
		byType[c.Type] = c
	}
	var out []v1.PersistentVolumeClaimCondition
	for _, c := range conds {
		switch nc, replaced := byType[c.Type]; {
		case !owned[c.Type]:
			out = append(out, c)
		case replaced:
			out = append(out, nc)
			delete(byType, c.Type)
		case keepOld:
			out = append(out, c)
		}
	}
	for _, c := range set { // in the caller's order, for stable output
		if _, left := byType[c.Type]; left {
			out = append(out, c)
		}
	}
	return out
}

// isFinalError reports whether a failed CSI call certainly did not leave an
// operation running in the driver: one never sent (notCalled), or one the
// driver answered for sure (csiconn.Final).
func isFinalError(err error) bool {
	var nc notCalled
	return errors.As(err, &nc) || csiconn.Final(err)
}

// notCalled wraps an error that stopped a CSI call before it was sent (a
// missing secret, a bad PV): certainly nothing runs in the driver.
type notCalled struct{ error }

func (n notCalled) Unwrap() error { return n.error }

// isInfeasibleError reports the final errors that say the request itself can
// never succeed (so the user has to change it).
func isInfeasibleError(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange, codes.NotFound:
		return true
	}
	return false
}

func hasCondition(pvc *v1.PersistentVolumeClaim, t v1.PersistentVolumeClaimConditionType) bool {
	for _, c := range pvc.Status.Conditions {
		if c.Type == t && c.Status == v1.ConditionTrue {
			return true
		}
	}
	return false
}
