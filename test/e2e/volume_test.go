package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A Pod writes to a dynamically provisioned PVC, is deleted, and a new Pod
// reads the data back. On the way: the kubelet staged and published the volume
// with the attachmentMetadata csi-hub's attacher wrote into the VolumeAttachment.
func testDataSurvivesPodDeletion(t *testing.T) {
	ns := newNamespace(t, "persist")
	createClaim(t, ns, "data", claimOpts{size: "64Mi"})
	want := token(t)
	// The writer stays up so that the volume is staged and published while we look.
	startPod(t, podWithClaim(ns, "writer", "data", false, v1.RestartPolicyNever,
		"echo "+want+" > /data/file && sync && echo written && sleep 3600"))
	waitFor(t, "writer wrote", shortWait, func(ctx context.Context) (bool, error) {
		return strings.Contains(podLogs(t, ns, "writer"), "written"), nil
	})
	pv := boundPV(t, ns, "data")
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driverName {
		t.Fatalf("PV %s is not a %s CSI volume: %+v", pv.Name, driverName, pv.Spec.PersistentVolumeSource)
	}
	if got := pv.Annotations["pv.kubernetes.io/provisioned-by"]; got != driverName {
		t.Errorf("PV annotation provisioned-by = %q, want %q", got, driverName)
	}
	writer, err := env.kube.CoreV1().Pods(ns).Get(context.Background(), "writer", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkAttachmentDroveNodeStage(t, pv, writer)
	deletePod(t, ns, "writer")

	got := runToCompletion(t, podWithClaim(ns, "reader", "data", false, v1.RestartPolicyNever, "cat /data/file"))
	if strings.TrimSpace(got) != want {
		t.Fatalf("new pod read %q from the volume, want %q", got, want)
	}
}

// checkAttachmentDroveNodeStage checks that csi-hub (not someone else) marked
// the VolumeAttachment attached with attachmentMetadata, and that the kubelet
// staged and published the volume for the pod with exactly that metadata as
// publish_context: the node plugin keeps what NodeStageVolume and
// NodePublishVolume received in its per-volume record on the host.
func checkAttachmentDroveNodeStage(t *testing.T, pv *v1.PersistentVolume, pod *v1.Pod) {
	t.Helper()
	ctx := context.Background()
	vas, err := env.kube.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var va *storagev1.VolumeAttachment
	for i := range vas.Items {
		if src := vas.Items[i].Spec.Source.PersistentVolumeName; src != nil && *src == pv.Name {
			va = &vas.Items[i]
		}
	}
	if va == nil {
		t.Fatalf("no VolumeAttachment for PV %s", pv.Name)
	}
	if va.Spec.Attacher != driverName || va.Spec.NodeName != nodeName {
		t.Errorf("VolumeAttachment %s: attacher %q node %q", va.Name, va.Spec.Attacher, va.Spec.NodeName)
	}
	if !va.Status.Attached || len(va.Status.AttachmentMetadata) == 0 {
		t.Fatalf("VolumeAttachment %s: attached=%v attachmentMetadata=%v; want attached with metadata", va.Name, va.Status.Attached, va.Status.AttachmentMetadata)
	}
	// Who wrote the status: the managed fields name the writer's user agent.
	var statusWriters []string
	for _, mf := range va.ManagedFields {
		if mf.Subresource == "status" {
			statusWriters = append(statusWriters, mf.Manager)
		}
	}
	if !containsPrefix(statusWriters, "csi-hub") {
		t.Errorf("VolumeAttachment %s status written by %v, want csi-hub", va.Name, statusWriters)
	}

	file := nodeStateDir + "/" + url.PathEscape(pv.Spec.CSI.VolumeHandle) + ".json"
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("node plugin record of the staged volume: %v", err)
	}
	var rec struct {
		StagingPath    string            `json:"stagingPath"`
		Device         string            `json:"device"`
		PublishContext map[string]string `json:"publishContext"`
		Targets        map[string]any    `json:"targets"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	t.Logf("VolumeAttachment %s attachmentMetadata %v; NodeStageVolume got publish_context %v, staging %s, device %s",
		va.Name, va.Status.AttachmentMetadata, rec.PublishContext, rec.StagingPath, rec.Device)
	if !reflect.DeepEqual(rec.PublishContext, va.Status.AttachmentMetadata) {
		t.Errorf("NodeStageVolume publish_context %v != VolumeAttachment attachmentMetadata %v", rec.PublishContext, va.Status.AttachmentMetadata)
	}
	// The kubelet chose these paths: its global staging dir for the PV and the pod's volume dir.
	if !strings.HasPrefix(rec.StagingPath, kubeletDir+"/plugins/kubernetes.io/csi/"+driverName+"/") {
		t.Errorf("staging path %q is not the kubelet's", rec.StagingPath)
	}
	wantTarget := kubeletDir + "/pods/" + string(pod.UID) + "/volumes/kubernetes.io~csi/" + pv.Name + "/mount"
	if _, ok := rec.Targets[wantTarget]; !ok {
		t.Errorf("NodePublishVolume targets %v lack the pod's volume dir %s", rec.Targets, wantTarget)
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// A raw block volume: the Pod sees a device, not a filesystem, and what one
// Pod writes to it the next one reads.
func testBlockVolume(t *testing.T) {
	ns := newNamespace(t, "block")
	createClaim(t, ns, "raw", claimOpts{size: "32Mi", block: true})
	want := token(t)
	runToCompletion(t, podWithClaim(ns, "writer", "raw", true, v1.RestartPolicyNever,
		"test -b /dev/xvda && printf '"+want+"' | dd of=/dev/xvda conv=fsync 2>/dev/null"))
	pv := boundPV(t, ns, "raw")
	if pv.Spec.VolumeMode == nil || *pv.Spec.VolumeMode != v1.PersistentVolumeBlock {
		t.Errorf("PV %s volumeMode = %v, want Block", pv.Name, pv.Spec.VolumeMode)
	}
	deletePod(t, ns, "writer")
	got := runToCompletion(t, podWithClaim(ns, "reader", "raw", true, v1.RestartPolicyNever,
		"test -b /dev/xvda && head -c "+itoa(len(want))+" /dev/xvda"))
	if got != want {
		t.Fatalf("block device read back %q, want %q", got, want)
	}
}
