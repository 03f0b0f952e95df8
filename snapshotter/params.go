package snapshotter

import (
	"fmt"
	"strings"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
)

// Keys of the csi.storage.k8s.io/ namespace, as the snapshot-controller and
// the csi-snapshotter sidecar define them.
const (
	csiParameterPrefix = "csi.storage.k8s.io/"

	ParamSnapshotterSecretName          = csiParameterPrefix + "snapshotter-secret-name"
	ParamSnapshotterSecretNamespace     = csiParameterPrefix + "snapshotter-secret-namespace"
	ParamSnapshotterListSecretName      = csiParameterPrefix + "snapshotter-list-secret-name"
	ParamSnapshotterListSecretNamespace = csiParameterPrefix + "snapshotter-list-secret-namespace"

	// Group snapshot secrets may sit in a VolumeSnapshotClass shared with a
	// group class; they are reserved keys that are dropped, not rejected.
	paramGroupSnapshotterSecretName         = csiParameterPrefix + "group-snapshotter-secret-name"
	paramGroupSnapshotterSecretNamespace    = csiParameterPrefix + "group-snapshotter-secret-namespace"
	paramGroupSnapshotterGetSecretName      = csiParameterPrefix + "group-snapshotter-get-secret-name"
	paramGroupSnapshotterGetSecretNamespace = csiParameterPrefix + "group-snapshotter-get-secret-namespace"

	// Added by --extra-create-metadata.
	ParamVolumeSnapshotName        = csiParameterPrefix + "volumesnapshot/name"
	ParamVolumeSnapshotNamespace   = csiParameterPrefix + "volumesnapshot/namespace"
	ParamVolumeSnapshotContentName = csiParameterPrefix + "volumesnapshotcontent/name"
)

var reservedClassParameters = map[string]bool{
	ParamSnapshotterSecretName:              true,
	ParamSnapshotterSecretNamespace:         true,
	ParamSnapshotterListSecretName:          true,
	ParamSnapshotterListSecretNamespace:     true,
	paramGroupSnapshotterSecretName:         true,
	paramGroupSnapshotterSecretNamespace:    true,
	paramGroupSnapshotterGetSecretName:      true,
	paramGroupSnapshotterGetSecretNamespace: true,
}

// snapshotName is the name CreateSnapshot gets: stable per VolumeSnapshot, so
// a retried or restarted creation finds the snapshot it already cut.
func snapshotName(prefix string, uuidLength int, snapshotUID string) (string, error) {
	if snapshotUID == "" {
		return "", fmt.Errorf("spec.volumeSnapshotRef.uid is empty: the content is not bound to a VolumeSnapshot")
	}
	if uuidLength == -1 {
		return prefix + "-" + snapshotUID, nil
	}
	uid := strings.ReplaceAll(snapshotUID, "-", "")
	if uuidLength > len(uid) {
		return "", fmt.Errorf("--snapshot-name-uuid-length %d is longer than the VolumeSnapshot UID %q without dashes (%d)", uuidLength, snapshotUID, len(uid))
	}
	return prefix + "-" + uid[:uuidLength], nil
}

// createParameters are the class parameters the driver gets: the
// csi.storage.k8s.io/ keys are the sidecar's own and are removed; an unknown
// key in that namespace is a mistake in the class and is an error.
func createParameters(class *snapv1.VolumeSnapshotClass, content *snapv1.VolumeSnapshotContent, extraMetadata bool) (map[string]string, error) {
	params := map[string]string{}
	for k, v := range class.Parameters {
		if !strings.HasPrefix(k, csiParameterPrefix) {
			params[k] = v
			continue
		}
		if !reservedClassParameters[k] {
			return nil, fmt.Errorf("VolumeSnapshotClass %s: parameter %q uses the reserved prefix %s but is not a known key", class.Name, k, csiParameterPrefix)
		}
	}
	if extraMetadata {
		params[ParamVolumeSnapshotName] = content.Spec.VolumeSnapshotRef.Name
		params[ParamVolumeSnapshotNamespace] = content.Spec.VolumeSnapshotRef.Namespace
		params[ParamVolumeSnapshotContentName] = content.Name
	}
	return params, nil
}
