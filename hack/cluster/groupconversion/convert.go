// Command groupconversion is the local cluster's CRD conversion webhook for
// VolumeGroupSnapshotContent (groupsnapshot.storage.k8s.io), so that the
// cluster serves the deprecated v1beta1 view of a content faithfully.
//
// Why: the external-snapshotter v8.7 CRDs store v1beta2 and serve v1,
// v1beta1 and v1beta2 with conversion strategy None. v1 and v1beta2 have the
// same schema, but v1beta1's status lists the members as
// volumeSnapshotHandlePairList where v1beta2/v1 have volumeSnapshotInfoList, so
// without a webhook a v1beta1 read of a content shows no members at all (the
// apiserver prunes the unknown field). Kubernetes' v1.34 storage e2e suite
// reads exactly that (volumegroupsnapshottable). Upstream's
// snapshot-conversion-webhook v8.7 converts v1beta1<->v1beta2 only and fails
// every conversion to or from v1, the version snapshot-controller v8.7 and
// csi-hub use, so it cannot be installed beside them. This one converts
// v1beta1<->v1beta2 as upstream's does (same annotation, so a round trip
// loses nothing) and treats v1 as v1beta2.
//
// hack/cluster/up.sh builds and runs it on the host and points the CRD at it.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

const (
	group = "groupsnapshot.storage.k8s.io"
	// infoListAnnotation keeps v1beta2's volumeSnapshotInfoList while the
	// object is seen as v1beta1 (upstream's snapshot-conversion-webhook uses it too).
	infoListAnnotation = "groupsnapshot.storage.kubernetes.io/volume-snapshot-info-list"
)

// schemaOf maps an apiVersion to the schema it uses: v1 is v1beta2's.
func schemaOf(apiVersion string) (string, error) {
	g, v, ok := strings.Cut(apiVersion, "/")
	if !ok || g != group {
		return "", fmt.Errorf("apiVersion %q is not of group %s", apiVersion, group)
	}
	switch v {
	case "v1", "v1beta2":
		return "v1beta2", nil
	case "v1beta1":
		return "v1beta1", nil
	}
	return "", fmt.Errorf("unknown version %q of %s", v, group)
}

// convert converts one VolumeGroupSnapshotContent to apiVersion in place.
func convert(obj map[string]any, apiVersion string) error {
	if kind, _ := obj["kind"].(string); kind != "VolumeGroupSnapshotContent" {
		return fmt.Errorf("unexpected kind %q (this webhook converts VolumeGroupSnapshotContent only)", kind)
	}
	fromVersion, _ := obj["apiVersion"].(string)
	from, err := schemaOf(fromVersion)
	if err != nil {
		return err
	}
	to, err := schemaOf(apiVersion)
	if err != nil {
		return err
	}
	switch {
	case from == "v1beta1" && to == "v1beta2":
		err = toV1beta2(obj)
	case from == "v1beta2" && to == "v1beta1":
		err = toV1beta1(obj)
	}
	if err != nil {
		return err
	}
	obj["apiVersion"] = apiVersion
	return nil
}

// toV1beta1: volumeSnapshotInfoList becomes volumeSnapshotHandlePairList
// (volumeHandle and snapshotHandle of each member); the whole list is kept
// in an annotation for the way back.
func toV1beta1(obj map[string]any) error {
	status, _ := obj["status"].(map[string]any)
	list, found := status["volumeSnapshotInfoList"]
	if !found {
		return nil
	}
	entries, ok := list.([]any)
	if !ok {
		return fmt.Errorf(".status.volumeSnapshotInfoList is %T, not a list", list)
	}
	kept, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	pairs := make([]any, 0, len(entries))
	for i, e := range entries {
		m, ok := e.(map[string]any)
		if !ok {
			return fmt.Errorf(".status.volumeSnapshotInfoList[%d] is %T, not an object", i, e)
		}
		pair := map[string]any{}
		for _, k := range []string{"volumeHandle", "snapshotHandle"} {
			if v, ok := m[k]; ok {
				pair[k] = v
			}
		}
		pairs = append(pairs, pair)
	}
	delete(status, "volumeSnapshotInfoList")
	status["volumeSnapshotHandlePairList"] = pairs
	annotations(obj)[infoListAnnotation] = string(kept)
	return nil
}

// toV1beta2: the annotation, when there is one, gives back the whole
// volumeSnapshotInfoList; else volumeSnapshotHandlePairList is renamed.
func toV1beta2(obj map[string]any) error {
	meta, _ := obj["metadata"].(map[string]any)
	ann, _ := meta["annotations"].(map[string]any)
	status, _ := obj["status"].(map[string]any)
	if kept, ok := ann[infoListAnnotation].(string); ok {
		delete(ann, infoListAnnotation)
		if len(ann) == 0 {
			delete(meta, "annotations")
		}
		var entries []any
		if err := decode([]byte(kept), &entries); err != nil {
			return fmt.Errorf("annotation %s: %w", infoListAnnotation, err)
		}
		if status == nil {
			status = map[string]any{}
			obj["status"] = status
		}
		delete(status, "volumeSnapshotHandlePairList")
		status["volumeSnapshotInfoList"] = entries
		return nil
	}
	if list, found := status["volumeSnapshotHandlePairList"]; found {
		delete(status, "volumeSnapshotHandlePairList")
		status["volumeSnapshotInfoList"] = list
	}
	return nil
}

// decode is json.Unmarshal keeping numbers as json.Number: the lists hold
// int64 nanosecond creation times, which a float64 would round.
func decode(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	return d.Decode(v)
}

// annotations returns the object's annotations map, creating it.
func annotations(obj map[string]any) map[string]any {
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		obj["metadata"] = meta
	}
	ann, _ := meta["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		meta["annotations"] = ann
	}
	return ann
}
