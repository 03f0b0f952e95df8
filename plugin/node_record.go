package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// nodeRecord is what the node remembers about one staged volume. It is written
// before the node changes anything, so a plugin that crashes or restarts mid-way
// can still find and undo what it did. It is a hint, never trusted alone: every
// RPC checks it against /proc/self/mountinfo and the transport's view of devices.
type nodeRecord struct {
	VolumeID       string            `json:"volumeID"`
	StagingPath    string            `json:"stagingPath"`
	Block          bool              `json:"block"`
	FsType         string            `json:"fsType,omitempty"`
	ReadOnly       bool              `json:"readOnly,omitempty"` // staged read-only (reader access mode)
	MountFlags     []string          `json:"mountFlags,omitempty"`
	Device         string            `json:"device"`
	PublishContext map[string]string `json:"publishContext"`
	// Targets are the publish paths of the volume.
	Targets map[string]publishedTarget `json:"targets,omitempty"`
}

type publishedTarget struct {
	ReadOnly     bool `json:"readOnly,omitempty"`
	SingleWriter bool `json:"singleWriter,omitempty"`
	// Device is a read-only device made only for this target (raw block, read-only).
	Device string `json:"device,omitempty"`
}

type nodeRecords struct{ dir string }

var errNoRecord = errors.New("no node record")

func (r *nodeRecords) path(volumeID string) string {
	// Volume IDs are opaque strings; escape them so none can leave the dir.
	return filepath.Join(r.dir, url.PathEscape(volumeID)+".json")
}

func (r *nodeRecords) load(volumeID string) (*nodeRecord, error) {
	raw, err := os.ReadFile(r.path(volumeID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoRecord
	}
	if err != nil {
		return nil, err
	}
	var rec nodeRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("node record of %s: %w", volumeID, err)
	}
	if rec.Targets == nil {
		rec.Targets = map[string]publishedTarget{}
	}
	return &rec, nil
}

// save writes the record atomically (write, fsync, rename) so a crash never
// leaves a half-written record behind.
func (r *nodeRecords) save(rec *nodeRecord) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	final := r.path(rec.VolumeID)
	tmp, err := os.CreateTemp(r.dir, ".rec-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), final)
}

func (r *nodeRecords) remove(volumeID string) error {
	err := os.Remove(r.path(volumeID))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// stagedAt returns the volume whose record says it is staged at path, or "".
func (r *nodeRecords) stagedAt(path string) (string, error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		id, err := url.PathUnescape(name)
		if err != nil {
			continue
		}
		rec, err := r.load(id)
		if err != nil {
			continue
		}
		if rec.StagingPath == path {
			return rec.VolumeID, nil
		}
	}
	return "", nil
}
