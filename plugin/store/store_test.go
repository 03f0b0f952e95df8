package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestVolumeRecords(t *testing.T) {
	s := openTemp(t)
	v := &Volume{ID: "vol-0000000000000001", Name: "a", SizeBytes: 100, State: StateCreating}
	if err := s.InsertVolume(v, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertVolume(&Volume{ID: "vol-0000000000000002", Name: "a", SizeBytes: 1}, 0); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("duplicate name: got %v", err)
	}
	got, err := s.VolumeByName("a")
	if err != nil || got.ID != v.ID || got.State != StateCreating {
		t.Fatalf("by name: %+v %v", got, err)
	}
	got.State = StateReady
	got.Attachments = map[string]Attachment{"n2": {}, "n1": {ReadOnly: true}}
	if err := s.UpdateVolume(got); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Volume(v.ID)
	if got.State != StateReady || fmt.Sprint(got.AttachedNodes()) != "[n1 n2]" || !got.Attachments["n1"].ReadOnly {
		t.Fatalf("after update: %+v", got)
	}
	if err := s.DeleteVolume(v.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VolumeByName("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("name index kept after delete: %v", err)
	}
	if err := s.DeleteVolume(v.ID); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.UpdateVolume(got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of deleted record: %v", err)
	}
}

func TestCapacityCountsVolumesAndSnapshots(t *testing.T) {
	s := openTemp(t)
	if err := s.InsertVolume(&Volume{ID: "vol-1", Name: "a", SizeBytes: 60}, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertSnapshot(&Snapshot{ID: "snap-1", Name: "s", SizeBytes: 30}, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertVolume(&Volume{ID: "vol-2", Name: "b", SizeBytes: 11}, 100); !errors.Is(err, ErrCapacity) {
		t.Fatalf("over capacity: %v", err)
	}
	if _, err := s.BeginExpandVolume("vol-1", 71, 100); !errors.Is(err, ErrCapacity) {
		t.Fatalf("expansion over capacity: %v", err)
	}
	rec, err := s.BeginExpandVolume("vol-1", 70, 100)
	if err != nil || rec.ExpandingTo != 70 {
		t.Fatalf("expansion: %+v %v", rec, err)
	}
	if used, _ := s.Used(); used != 100 {
		t.Fatalf("used %d, want 100 (expansion target counts)", used)
	}
	if _, err := s.Volume("vol-2"); !errors.Is(err, ErrNotFound) {
		t.Fatal("refused insert left a record")
	}
}

func TestPagination(t *testing.T) {
	s := openTemp(t)
	for i := range 5 {
		if err := s.InsertSnapshot(&Snapshot{ID: fmt.Sprintf("snap-%d", i), Name: fmt.Sprint(i), SourceVolumeID: fmt.Sprintf("vol-%d", i%2)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	page, next, err := s.Snapshots("", 2, nil)
	if err != nil || len(page) != 2 || next != "snap-2" {
		t.Fatalf("page 1: %d %q %v", len(page), next, err)
	}
	page, next, _ = s.Snapshots(next, 2, nil)
	if len(page) != 2 || page[0].ID != "snap-2" || next != "snap-4" {
		t.Fatalf("page 2: %d %q", len(page), next)
	}
	page, next, _ = s.Snapshots(next, 2, nil)
	if len(page) != 1 || next != "" {
		t.Fatalf("page 3: %d %q", len(page), next)
	}
	page, _, _ = s.Snapshots("", 0, func(s *Snapshot) bool { return s.SourceVolumeID == "vol-1" })
	if len(page) != 2 {
		t.Fatalf("filter: %d", len(page))
	}
	vols, next, _ := s.Volumes("", 1)
	if len(vols) != 0 || next != "" {
		t.Fatalf("empty volumes: %d %q", len(vols), next)
	}
}

func TestRecordsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InsertVolume(&Volume{ID: "vol-1", Name: "a", SizeBytes: 5, Parameters: map[string]string{"tier": "x"}}, 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, err := s.VolumeByName("a")
	if err != nil || v.Parameters["tier"] != "x" {
		t.Fatalf("after reopen: %+v %v", v, err)
	}
}
