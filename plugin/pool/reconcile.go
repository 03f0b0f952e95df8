package pool

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/store"
)

// Record ID prefixes; only files with these names belong to the pool.
const (
	VolumePrefix   = "vol-"
	SnapshotPrefix = "snap-"
)

// ParamType is the volume parameter that makes a volume thick ("thick") or thin.
const (
	ParamType = "type"
	TypeThick = "thick"
	TypeThin  = "thin"
)

// IsThick tells whether a volume's parameters ask for a preallocated file.
func IsThick(params map[string]string) bool { return params[ParamType] == TypeThick }

// Report says what Reconcile changed.
type Report struct {
	RemovedTempFiles   []string
	RemovedOrphanFiles []string
	FinishedCreates    []string // records in "creating" whose complete file existed
	RolledBackCreates  []string // records in "creating" without a file: removed
	FinishedDeletes    []string // records in "deleting": file and record removed
	FinishedExpansions []string
	// MissingData are ready records whose file is gone. They are kept (and the
	// controller reports them as abnormal) rather than dropped: dropping would
	// hide the data loss and let the CO believe the volume never existed.
	MissingData []string
}

// Reconcile brings the pool directory and the store into agreement after a
// start, finishing or rolling back whatever a crash interrupted: temporary
// files and files without records are removed, interrupted creates whose file
// was completed are marked ready and the others dropped, interrupted deletes
// and expansions are finished.
//
// unexport (may be nil) is called for every volume ID about to be dropped,
// before its file goes: a crash may have come after the transport exported it,
// and an export such as an nvmet namespace outlives the process.
func Reconcile(st *store.Store, p *Pool, unexport func(volumeID string) error) (*Report, error) {
	if unexport == nil {
		unexport = func(string) error { return nil }
	}
	rep := &Report{}
	_, temps, err := p.Files()
	if err != nil {
		return nil, err
	}
	for _, t := range temps {
		if err := p.RemoveTemp(t); err != nil {
			return nil, err
		}
		rep.RemovedTempFiles = append(rep.RemovedTempFiles, t)
	}
	known := map[string]bool{}
	if err := reconcileVolumes(st, p, rep, known, unexport); err != nil {
		return nil, err
	}
	if err := reconcileGroups(st, p, rep, known); err != nil {
		return nil, err
	}
	if err := reconcileSnapshots(st, p, rep, known); err != nil {
		return nil, err
	}
	ids, _, err := p.Files()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if known[id] || !(strings.HasPrefix(id, VolumePrefix) || strings.HasPrefix(id, SnapshotPrefix)) {
			continue
		}
		if strings.HasPrefix(id, VolumePrefix) {
			if err := unexport(id); err != nil {
				return nil, fmt.Errorf("unexport orphan %s: %w", id, err)
			}
		}
		if err := p.Remove(id); err != nil {
			return nil, fmt.Errorf("remove orphan %s: %w", id, err)
		}
		rep.RemovedOrphanFiles = append(rep.RemovedOrphanFiles, id)
	}
	if err := p.syncDir(); err != nil {
		return nil, err
	}
	klog.InfoS("Pool reconciled", "dir", p.Dir(), "removedTempFiles", rep.RemovedTempFiles,
		"removedOrphanFiles", rep.RemovedOrphanFiles, "finishedCreates", rep.FinishedCreates,
		"rolledBackCreates", rep.RolledBackCreates, "finishedDeletes", rep.FinishedDeletes,
		"finishedExpansions", rep.FinishedExpansions, "missingData", rep.MissingData)
	return rep, nil
}

func fileExists(p *Pool, id string) (bool, error) {
	_, err := p.Size(id)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func reconcileVolumes(st *store.Store, p *Pool, rep *Report, known map[string]bool, unexport func(string) error) error {
	vols, _, err := st.Volumes("", 0)
	if err != nil {
		return err
	}
	for _, v := range vols {
		exists, err := fileExists(p, v.ID)
		if err != nil {
			return err
		}
		if v.State == store.StateDeleting || (v.State == store.StateCreating && !exists) {
			if err := unexport(v.ID); err != nil {
				return fmt.Errorf("unexport %s: %w", v.ID, err)
			}
		}
		switch {
		case v.State == store.StateDeleting:
			if err := p.Remove(v.ID); err != nil {
				return err
			}
			if err := st.DeleteVolume(v.ID); err != nil {
				return err
			}
			rep.FinishedDeletes = append(rep.FinishedDeletes, v.ID)
			continue
		case v.State == store.StateCreating && !exists:
			if err := st.DeleteVolume(v.ID); err != nil {
				return err
			}
			rep.RolledBackCreates = append(rep.RolledBackCreates, v.ID)
			continue
		case v.State == store.StateCreating:
			// The file only gets its final name once complete, so the create finished.
			v.State = store.StateReady
			if err := st.UpdateVolume(v); err != nil {
				return err
			}
			rep.FinishedCreates = append(rep.FinishedCreates, v.ID)
		case !exists:
			rep.MissingData = append(rep.MissingData, v.ID)
		}
		known[v.ID] = true
		if v.ExpandingTo > 0 && exists {
			if err := p.Resize(v.ID, v.ExpandingTo, IsThick(v.Parameters)); err != nil {
				return fmt.Errorf("finish expansion of %s: %w", v.ID, err)
			}
			v.SizeBytes, v.ExpandingTo = max(v.SizeBytes, v.ExpandingTo), 0
			if err := st.UpdateVolume(v); err != nil {
				return err
			}
			rep.FinishedExpansions = append(rep.FinishedExpansions, v.ID)
		}
	}
	return nil
}

func reconcileSnapshots(st *store.Store, p *Pool, rep *Report, known map[string]bool) error {
	snaps, _, err := st.Snapshots("", 0, nil)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if s.GroupID != "" {
			continue // settled with its group
		}
		exists, err := fileExists(p, s.ID)
		if err != nil {
			return err
		}
		switch {
		case s.State == store.StateDeleting:
			if err := p.Remove(s.ID); err != nil {
				return err
			}
			if err := st.DeleteSnapshot(s.ID); err != nil {
				return err
			}
			rep.FinishedDeletes = append(rep.FinishedDeletes, s.ID)
			continue
		case s.State == store.StateCreating && !exists:
			if err := st.DeleteSnapshot(s.ID); err != nil {
				return err
			}
			rep.RolledBackCreates = append(rep.RolledBackCreates, s.ID)
			continue
		case s.State == store.StateCreating:
			s.State = store.StateReady
			if err := st.UpdateSnapshot(s); err != nil {
				return err
			}
			rep.FinishedCreates = append(rep.FinishedCreates, s.ID)
		case !exists:
			rep.MissingData = append(rep.MissingData, s.ID)
		}
		known[s.ID] = true
	}
	return nil
}

// reconcileGroups settles group snapshots as a whole: an interrupted create
// is finished only when every member's file was published, else every member
// goes; an interrupted delete is finished.
func reconcileGroups(st *store.Store, p *Pool, rep *Report, known map[string]bool) error {
	groups, err := st.Groups()
	if err != nil {
		return err
	}
	for _, g := range groups {
		complete := true
		for _, id := range g.SnapshotIDs {
			exists, err := fileExists(p, id)
			if err != nil {
				return err
			}
			complete = complete && exists
		}
		switch {
		case g.State == store.StateDeleting || (g.State == store.StateCreating && !complete):
			for _, id := range g.SnapshotIDs {
				if err := p.Remove(id); err != nil {
					return err
				}
			}
			if err := st.DeleteGroup(g.ID); err != nil {
				return err
			}
			if g.State == store.StateDeleting {
				rep.FinishedDeletes = append(rep.FinishedDeletes, g.ID)
			} else {
				rep.RolledBackCreates = append(rep.RolledBackCreates, g.ID)
			}
			continue
		case g.State == store.StateCreating:
			if err := st.SetGroupState(g.ID, store.StateReady); err != nil {
				return err
			}
			rep.FinishedCreates = append(rep.FinishedCreates, g.ID)
		case !complete:
			rep.MissingData = append(rep.MissingData, g.ID)
		}
		for _, id := range g.SnapshotIDs {
			known[id] = true
		}
	}
	return nil
}
