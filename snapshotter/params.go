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

// driverParameters are a class's parameters without the sidecar's own
// csi.storage.k8s.io/ keys; an unknown key in that namespace is an error.
func driverParameters(class string, in map[string]string) (map[string]string, error) {
	params := map[string]string{}
	for k, v := range in {
		if !strings.HasPrefix(k, csiParameterPrefix) {
			params[k] = v
			continue
		}
		if !reservedClassParameters[k] {
			return nil, fmt.Errorf("%s: parameter %q uses the reserved prefix %s but is not a known key", class, k, csiParameterPrefix)
		}
	}
	return params, nil
}

// snapshotName is the name CreateSnapshot gets: stable per VolumeSnapshot, so
// a retried or restarted creation finds the snapshot it already cut.
func snapshotName(prefix string, uuidLength int, snapshotUID string) (string, error) {
	if snapshotUID == "" {
		return "", fmt.Errorf("spec.volumeSnapshotRef.uid is empty: the content is not bound to a VolumeSnapshot")
	}
	return prefixedName(prefix, uuidLength, snapshotUID, "--snapshot-name-uuid-length", "VolumeSnapshot")
}

// prefixedName is "<prefix>-<uid>", the uid without dashes and cut to
// uuidLength unless that is -1.
func prefixedName(prefix string, uuidLength int, uid, flag, kind string) (string, error) {
	if uuidLength == -1 {
		return prefix + "-" + uid, nil
	}
	short := strings.ReplaceAll(uid, "-", "")
	if uuidLength > len(short) {
		return "", fmt.Errorf("%s %d is longer than the %s UID %q without dashes (%d)", flag, uuidLength, kind, uid, len(short))
	}
	return prefix + "-" + short[:uuidLength], nil
}

// createParameters are the class parameters the driver gets: the
// csi.storage.k8s.io/ keys are the sidecar's own and are removed; an unknown
// key in that namespace is a mistake in the class and is an error.
func createParameters(class *snapv1.VolumeSnapshotClass, content *snapv1.VolumeSnapshotContent, extraMetadata bool) (map[string]string, error) {
	params, err := driverParameters("VolumeSnapshotClass "+class.Name, class.Parameters)
	if err != nil {
		return nil, err
	}
	if extraMetadata {
		params[ParamVolumeSnapshotName] = content.Spec.VolumeSnapshotRef.Name
		params[ParamVolumeSnapshotNamespace] = content.Spec.VolumeSnapshotRef.Namespace
		params[ParamVolumeSnapshotContentName] = content.Name
	}
	return params, nil
}
