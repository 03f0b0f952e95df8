package attacher

import (
	"encoding/json"
	"reflect"
	"testing"

	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func decode(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("patch %s: %v", data, err)
	}
	return m
}

// statusPatchJSON renders statusChanges as the patch writeStatus sends.
func statusPatchJSON(have, want storagev1.VolumeAttachmentStatus) ([]byte, error) {
	changes := statusChanges(have, want)
	if changes == nil {
		return nil, nil
	}
	return json.Marshal(map[string]any{"status": changes})
}

func TestStatusPatchWritesNothingWhenEqual(t *testing.T) {
	st := storagev1.VolumeAttachmentStatus{Attached: true, AttachmentMetadata: map[string]string{"a": "1"}}
	data, err := statusPatchJSON(st, *st.DeepCopy())
	if err != nil || data != nil {
		t.Fatalf("equal statuses gave patch %s, %v", data, err)
	}
	// nil and empty metadata are the same state.
	data, _ = statusPatchJSON(storagev1.VolumeAttachmentStatus{Attached: true},
		storagev1.VolumeAttachmentStatus{Attached: true, AttachmentMetadata: map[string]string{}})
	if data != nil {
		t.Fatalf("nil vs empty metadata gave patch %s", data)
	}
}

func TestStatusPatchNullsRemovedMetadataKeys(t *testing.T) {
	have := storagev1.VolumeAttachmentStatus{
		AttachmentMetadata: map[string]string{"old": "x", "kept": "1"},
		AttachError:        &storagev1.VolumeError{Message: "boom", Time: metav1.Now()},
	}
	want := storagev1.VolumeAttachmentStatus{Attached: true, AttachmentMetadata: map[string]string{"kept": "2", "new": "3"}}
	data, err := statusPatchJSON(have, want)
	if err != nil {
		t.Fatal(err)
	}
	st := decode(t, data)["status"].(map[string]any)
	wantMD := map[string]any{"old": nil, "kept": "2", "new": "3"}
	if !reflect.DeepEqual(st["attachmentMetadata"], wantMD) {
		t.Errorf("attachmentMetadata patch = %v, want %v", st["attachmentMetadata"], wantMD)
	}
	if st["attached"] != true {
		t.Errorf("attached = %v", st["attached"])
	}
	if v, ok := st["attachError"]; !ok || v != nil {
		t.Errorf("attachError must be nulled, got %v (present %v)", v, ok)
	}
}

func TestStatusPatchClearsMetadataOnDetach(t *testing.T) {
	have := storagev1.VolumeAttachmentStatus{Attached: true, AttachmentMetadata: map[string]string{"a": "1"}}
	data, _ := statusPatchJSON(have, storagev1.VolumeAttachmentStatus{})
	st := decode(t, data)["status"].(map[string]any)
	if v, ok := st["attachmentMetadata"]; !ok || v != nil || st["attached"] != false {
		t.Errorf("detach patch = %s", data)
	}
}

func TestStaleGuard(t *testing.T) {
	g := newStaleGuard()
	if g.isStale("va", "1") {
		t.Fatal("unknown object reported stale")
	}
	g.wrote("va", "1")
	g.wrote("va", "2")
	if !g.isStale("va", "1") || !g.isStale("va", "2") {
		t.Fatal("versions we replaced must be stale")
	}
	if g.isStale("va", "3") {
		t.Fatal("our own latest version is not stale")
	}
	if g.isStale("va", "1") {
		t.Fatal("once the cache caught up the record must be gone")
	}
	g.wrote("va", "4")
	g.forget("va")
	if g.isStale("va", "4") {
		t.Fatal("forget must drop the record")
	}
}

func TestWorthSyncing(t *testing.T) {
	base := &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "va", ResourceVersion: "1"}}
	withErr := base.DeepCopy()
	withErr.ResourceVersion = "2"
	withErr.Status.AttachError = &storagev1.VolumeError{Message: "boom"}
	if worthSyncing(base, withErr) {
		t.Error("a change of attachError alone (our own report) must not trigger a sync")
	}
	if !worthSyncing(withErr, withErr) {
		t.Error("a periodic resync (same resourceVersion) must sync")
	}
	deleting := withErr.DeepCopy()
	deleting.ResourceVersion = "3"
	deleting.DeletionTimestamp = &metav1.Time{}
	if !worthSyncing(withErr, deleting) {
		t.Error("deletion must trigger a sync even with an error present")
	}
	attached := base.DeepCopy()
	attached.ResourceVersion = "4"
	attached.Status.Attached = true
	if !worthSyncing(base, attached) {
		t.Error("a change without errors must sync")
	}
}
