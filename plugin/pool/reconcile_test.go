package pool

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/csi-hub/csi-hub/plugin/store"
)

// TestReconcile builds every state a crash can leave and checks each is
// finished or rolled back so that records and files match.
func TestReconcile(t *testing.T) {
	p := newPool(t)
	st, err := store.Open(filepath.Join(p.Dir(), "csi-hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mustInsert := func(v *store.Volume) {
		if err := st.InsertVolume(v, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Crash after record, before the file got its final name.
	mustInsert(&store.Volume{ID: "vol-creating-nofile", Name: "a", SizeBytes: mib, State: store.StateCreating})
	if err := os.WriteFile(filepath.Join(p.Dir(), ".tmp-vol-creating-nofile-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Crash after rename, before the record said ready.
	mustInsert(&store.Volume{ID: "vol-creating-file", Name: "b", SizeBytes: mib, State: store.StateCreating})
	if err := p.Create("vol-creating-file", mib, false); err != nil {
		t.Fatal(err)
	}
	// Crash in the middle of a delete.
	mustInsert(&store.Volume{ID: "vol-deleting", Name: "c", SizeBytes: mib, State: store.StateDeleting})
	if err := p.Create("vol-deleting", mib, false); err != nil {
		t.Fatal(err)
	}
	// Crash during an expansion.
	mustInsert(&store.Volume{ID: "vol-expanding", Name: "d", SizeBytes: mib, ExpandingTo: 2 * mib, State: store.StateReady})
	if err := p.Create("vol-expanding", mib, false); err != nil {
		t.Fatal(err)
	}
	// Healthy, and one whose file vanished behind our back.
	mustInsert(&store.Volume{ID: "vol-ok", Name: "e", SizeBytes: mib, State: store.StateReady})
	if err := p.Create("vol-ok", mib, false); err != nil {
		t.Fatal(err)
	}
	mustInsert(&store.Volume{ID: "vol-lost", Name: "f", SizeBytes: mib, State: store.StateReady})
	// Files nobody recorded, and a foreign file that is not ours to remove.
	for _, id := range []string{"vol-orphan", "snap-orphan"} {
		if err := p.Create(id, mib, false); err != nil {
			t.Fatal(err)
		}
	}
	foreign := filepath.Join(p.Dir(), "README")
	if err := os.WriteFile(foreign, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Snapshots: interrupted create without and with file.
	if err := st.InsertSnapshot(&store.Snapshot{ID: "snap-creating-nofile", Name: "s1", SourceVolumeID: "vol-ok", SizeBytes: mib, State: store.StateCreating}, 0); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertSnapshot(&store.Snapshot{ID: "snap-creating-file", Name: "s2", SourceVolumeID: "vol-ok", SizeBytes: mib, State: store.StateCreating}, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateFrom("snap-creating-file", "vol-ok", mib, false); err != nil {
		t.Fatal(err)
	}

	var unexported []string
	rep, err := Reconcile(st, p, func(id string) error {
		if _, err := p.Size(id); id != "vol-creating-nofile" && err != nil {
			t.Errorf("unexport of %s called after its file was removed", id)
		}
		unexported = append(unexported, id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got []string, want ...string) {
		t.Helper()
		slices.Sort(got)
		slices.Sort(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	check("temp files", rep.RemovedTempFiles, ".tmp-vol-creating-nofile-123")
	check("orphans", rep.RemovedOrphanFiles, "vol-orphan", "snap-orphan")
	check("finished creates", rep.FinishedCreates, "vol-creating-file", "snap-creating-file")
	check("rolled back", rep.RolledBackCreates, "vol-creating-nofile", "snap-creating-nofile")
	check("finished deletes", rep.FinishedDeletes, "vol-deleting")
	check("finished expansions", rep.FinishedExpansions, "vol-expanding")
	check("missing data", rep.MissingData, "vol-lost")
	check("unexported", unexported, "vol-creating-nofile", "vol-deleting", "vol-orphan")

	// Afterwards every file has a record and every record (but the lost one) its file.
	ids, temps, _ := p.Files()
	check("files left", ids, "vol-creating-file", "vol-expanding", "vol-ok", "snap-creating-file")
	check("temps left", temps)
	vols, _, _ := st.Volumes("", 0)
	var recs []string
	for _, v := range vols {
		recs = append(recs, v.ID)
		if v.State != store.StateReady {
			t.Errorf("%s left in state %s", v.ID, v.State)
		}
	}
	check("volume records", recs, "vol-creating-file", "vol-expanding", "vol-ok", "vol-lost")
	if v, _ := st.Volume("vol-expanding"); v.SizeBytes != 2*mib || v.ExpandingTo != 0 {
		t.Errorf("expansion not finished: %+v", v)
	}
	if size, _ := p.Size("vol-expanding"); size != 2*mib {
		t.Errorf("expanded file is %d bytes", size)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("foreign file removed: %v", err)
	}
	// A second run has nothing to do.
	rep, err = Reconcile(st, p, nil)
	if err != nil || len(rep.RemovedOrphanFiles)+len(rep.FinishedCreates)+len(rep.RolledBackCreates)+len(rep.FinishedDeletes) != 0 {
		t.Fatalf("second reconcile changed things: %+v %v", rep, err)
	}
}
