package pool

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/csi-hub/csi-hub/plugin/store"
)

// TestReconcileGroups: a group interrupted while its member files were being
// published is removed whole; one whose files all exist is finished whole;
// an interrupted group delete is finished.
func TestReconcileGroups(t *testing.T) {
	p := newPool(t)
	st, err := store.Open(filepath.Join(p.Dir(), "csi-hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	group := func(id string, state store.State, files ...bool) []string {
		g := &store.Group{ID: id, Name: id, State: state}
		var members []*store.Snapshot
		for i, hasFile := range files {
			sid := "snap-" + id + "-" + string(rune('a'+i))
			g.SnapshotIDs = append(g.SnapshotIDs, sid)
			members = append(members, &store.Snapshot{ID: sid, SourceVolumeID: "vol-x", SizeBytes: mib, State: state, GroupID: id})
			if hasFile {
				if err := p.Create(sid, mib, false); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := st.InsertGroup(g, members, 0); err != nil {
			t.Fatal(err)
		}
		return g.SnapshotIDs
	}
	half := group("vgs-half", store.StateCreating, true, false, true)
	whole := group("vgs-whole", store.StateCreating, true, true, true)
	gone := group("vgs-deleting", store.StateDeleting, true, false)
	rep, err := Reconcile(st, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.RolledBackCreates, "vgs-half") || !slices.Contains(rep.FinishedCreates, "vgs-whole") || !slices.Contains(rep.FinishedDeletes, "vgs-deleting") {
		t.Fatalf("report %+v", rep)
	}
	for _, id := range append(half, gone...) {
		if _, err := os.Stat(p.Path(id)); !os.IsNotExist(err) {
			t.Errorf("member file %s left: %v", id, err)
		}
		if _, err := st.Snapshot(id); err != store.ErrNotFound {
			t.Errorf("member record %s left: %v", id, err)
		}
	}
	g, members, err := st.Group("vgs-whole")
	if err != nil || g.State != store.StateReady || len(members) != len(whole) {
		t.Fatalf("finished group %+v %v %v", g, members, err)
	}
	for _, m := range members {
		if m.State != store.StateReady {
			t.Errorf("member %s is %s", m.ID, m.State)
		}
	}
	for _, id := range []string{"vgs-half", "vgs-deleting"} {
		if _, _, err := st.Group(id); err != store.ErrNotFound {
			t.Errorf("group %s still recorded: %v", id, err)
		}
		if _, _, err := st.GroupByName(id); err != store.ErrNotFound {
			t.Errorf("group name %s still taken: %v", id, err)
		}
	}
}
