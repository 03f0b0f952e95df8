package fakedriver

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Volume is a volume in the fake backend.
type Volume struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	CapacityBytes     int64             `json:"capacityBytes"`
	Parameters        map[string]string `json:"parameters,omitempty"`
	MutableParameters map[string]string `json:"mutableParameters,omitempty"`
	VolumeContext     map[string]string `json:"volumeContext,omitempty"`
	// Block is true when the volume was created for raw block access.
	Block bool `json:"block,omitempty"`
	// SourceSnapshotID / SourceVolumeID record volume_content_source.
	SourceSnapshotID string `json:"sourceSnapshotID,omitempty"`
	SourceVolumeID   string `json:"sourceVolumeID,omitempty"`
	// AccessibleTopology is set only when Options.Topology is on.
	AccessibleTopology []map[string]string `json:"accessibleTopology,omitempty"`
	// Attachments are ControllerPublishVolume results, by node ID.
	Attachments map[string]Attachment `json:"attachments,omitempty"`
	// StagingPath and TargetPaths are what this node's NodeStage/NodePublish received.
	StagingPath string    `json:"stagingPath,omitempty"`
	TargetPaths []string  `json:"targetPaths,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
}

// Attachment is a volume published to a node.
type Attachment struct {
	ReadOnly       bool              `json:"readOnly,omitempty"`
	PublishContext map[string]string `json:"publishContext,omitempty"`
}

// Snapshot is a snapshot in the fake backend.
type Snapshot struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	SourceVolumeID string            `json:"sourceVolumeID"`
	SizeBytes      int64             `json:"sizeBytes"`
	Parameters     map[string]string `json:"parameters,omitempty"`
	CreatedAt      time.Time         `json:"createdAt"`
	ReadyToUse     bool              `json:"readyToUse"`
	// Polls counts observations since creation (see Options.SnapshotReadyAfterPolls).
	Polls int `json:"polls"`
	// ReadinessPinned fixes ReadyToUse, ignoring the ready options: set by
	// AddSnapshot and SetSnapshotReady.
	ReadinessPinned bool `json:"readinessPinned,omitempty"`
}

type state struct {
	Volumes   map[string]*Volume   `json:"volumes"`
	Snapshots map[string]*Snapshot `json:"snapshots"`
}

func newState() state {
	return state{Volumes: map[string]*Volume{}, Snapshots: map[string]*Snapshot{}}
}

func (s *state) volumeByName(name string) *Volume {
	for _, v := range s.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

func (s *state) snapshotByName(name string) *Snapshot {
	for _, sn := range s.Snapshots {
		if sn.Name == name {
			return sn
		}
	}
	return nil
}

func (s *state) usedBytes() int64 {
	var used int64
	for _, v := range s.Volumes {
		used += v.CapacityBytes
	}
	return used
}

func (v *Volume) clone() Volume {
	c := *v
	c.Parameters = maps.Clone(v.Parameters)
	c.MutableParameters = maps.Clone(v.MutableParameters)
	c.VolumeContext = maps.Clone(v.VolumeContext)
	c.AccessibleTopology = nil
	for _, seg := range v.AccessibleTopology {
		c.AccessibleTopology = append(c.AccessibleTopology, maps.Clone(seg))
	}
	c.Attachments = nil
	if v.Attachments != nil {
		c.Attachments = map[string]Attachment{}
		for node, a := range v.Attachments {
			c.Attachments[node] = Attachment{ReadOnly: a.ReadOnly, PublishContext: maps.Clone(a.PublishContext)}
		}
	}
	c.TargetPaths = slices.Clone(v.TargetPaths)
	return c
}

func (s *Snapshot) clone() Snapshot {
	c := *s
	c.Parameters = maps.Clone(s.Parameters)
	return c
}

// Volumes returns a copy of every volume in the backend, sorted by ID.
func (d *Driver) Volumes() []Volume {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Volume, 0, len(d.state.Volumes))
	for _, id := range slices.Sorted(maps.Keys(d.state.Volumes)) {
		out = append(out, d.state.Volumes[id].clone())
	}
	return out
}

// Snapshots returns a copy of every snapshot in the backend, sorted by ID.
// ReadyToUse reflects the time condition as of now; listing here is not a poll.
func (d *Driver) Snapshots() []Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Snapshot, 0, len(d.state.Snapshots))
	for _, id := range slices.Sorted(maps.Keys(d.state.Snapshots)) {
		sn := d.state.Snapshots[id]
		d.refreshReadiness(sn)
		out = append(out, sn.clone())
	}
	return out
}

// Volume returns a copy of the volume with the given ID.
func (d *Driver) Volume(id string) (Volume, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.state.Volumes[id]
	if !ok {
		return Volume{}, false
	}
	return v.clone(), true
}

// VolumeByName returns a copy of the volume CreateVolume created under name.
func (d *Driver) VolumeByName(name string) (Volume, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.state.volumeByName(name)
	if v == nil {
		return Volume{}, false
	}
	return v.clone(), true
}

// AddVolume puts a volume straight into the backend, as an administrator
// would for static provisioning. An empty ID gets a generated one, which is
// returned. Existing volumes with the same ID are replaced.
func (d *Driver) AddVolume(v Volume) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v.ID == "" {
		v.ID = newID("vol")
	}
	if v.CreatedAt.IsZero() {
		v.CreatedAt = time.Now()
	}
	c := v.clone()
	d.state.Volumes[v.ID] = &c
	return v.ID, d.saveLocked()
}

// AddSnapshot puts a snapshot straight into the backend (pre-provisioned
// snapshot tests). An empty ID gets a generated one, which is returned. Its
// ReadyToUse stays as given until SetSnapshotReady.
func (d *Driver) AddSnapshot(s Snapshot) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.ID == "" {
		s.ID = newID("snap")
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = time.Now()
	}
	s.ReadinessPinned = true
	c := s.clone()
	d.state.Snapshots[s.ID] = &c
	return s.ID, d.saveLocked()
}

// RemoveVolume deletes a volume behind the CO's back, as an administrator or
// a backend failure would. It reports whether the volume existed.
func (d *Driver) RemoveVolume(id string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.state.Volumes[id]
	delete(d.state.Volumes, id)
	return ok, d.saveLocked()
}

// RemoveSnapshot deletes a snapshot behind the CO's back. It reports whether
// the snapshot existed.
func (d *Driver) RemoveSnapshot(id string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.state.Snapshots[id]
	delete(d.state.Snapshots, id)
	return ok, d.saveLocked()
}

// SetSnapshotReady forces a snapshot's readiness, overriding the ready options.
func (d *Driver) SetSnapshotReady(id string, ready bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	sn, ok := d.state.Snapshots[id]
	if !ok {
		return fmt.Errorf("snapshot %q not found", id)
	}
	sn.ReadyToUse, sn.ReadinessPinned = ready, true
	return d.saveLocked()
}

// saveLocked persists the state when Options.StateFile is set. Written to a
// temporary file and renamed so a crash never leaves a torn file.
func (d *Driver) saveLocked() error {
	if d.opts.StateFile == "" {
		return nil
	}
	data, err := json.MarshalIndent(d.state, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(d.opts.StateFile), ".fakedriver-state-*")
	if err != nil {
		return fmt.Errorf("persisting state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("persisting state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("persisting state: %w", err)
	}
	if err := os.Rename(tmp.Name(), d.opts.StateFile); err != nil {
		return fmt.Errorf("persisting state: %w", err)
	}
	return nil
}

func loadState(path string) (state, error) {
	st := newState()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return newState(), fmt.Errorf("%s: %w", path, err)
	}
	if st.Volumes == nil {
		st.Volumes = map[string]*Volume{}
	}
	if st.Snapshots == nil {
		st.Snapshots = map[string]*Snapshot{}
	}
	return st, nil
}

func newID(prefix string) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return prefix + "-" + hex.EncodeToString(b)
}
