// Package store keeps the durable records of volumes and snapshots in a bbolt
// database. Every write is one fsync'd bbolt transaction, so a kill -9 at any
// instant leaves either the old or the new record, never a half-written one.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// State is where a record is in its life cycle. Records in StateCreating or
// StateDeleting after a restart mark an operation a crash interrupted; the pool
// reconcile finishes or rolls them back.
type State string

const (
	StateCreating State = "creating"
	StateReady    State = "ready"
	StateDeleting State = "deleting"
)

// ContentSource says what a volume was filled from.
type ContentSource struct {
	SnapshotID string `json:"snapshotID,omitempty"`
	VolumeID   string `json:"volumeID,omitempty"`
}

// Capability is one volume capability a volume was created with.
type Capability struct {
	Block      bool   `json:"block,omitempty"`
	FsType     string `json:"fsType,omitempty"`
	AccessMode int32  `json:"accessMode"`
}

// Attachment is one node the volume is published to.
type Attachment struct {
	ReadOnly bool `json:"readOnly,omitempty"`
}

// Volume is the record of one volume.
type Volume struct {
	ID            string                `json:"id"`
	Name          string                `json:"name"`
	SizeBytes     int64                 `json:"sizeBytes"`
	Parameters    map[string]string     `json:"parameters,omitempty"`
	Capabilities  []Capability          `json:"capabilities,omitempty"`
	ContentSource *ContentSource        `json:"contentSource,omitempty"`
	Attachments   map[string]Attachment `json:"attachments,omitempty"`
	State         State                 `json:"state"`
	// ExpandingTo is the size an interrupted expansion was growing the file to.
	ExpandingTo int64     `json:"expandingTo,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
}

// Snapshot is the record of one snapshot.
type Snapshot struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	SourceVolumeID string    `json:"sourceVolumeID"`
	SizeBytes      int64     `json:"sizeBytes"`
	State          State     `json:"state"`
	CreatedAt      time.Time `json:"createdAt"`
	// GroupID is the group snapshot the snapshot was cut in; such a member
	// is created, finished and rolled back only with its whole group.
	GroupID string `json:"groupID,omitempty"`
}

var (
	bucketVolumes       = []byte("volumes")
	bucketVolumeNames   = []byte("volume-names")
	bucketSnapshots     = []byte("snapshots")
	bucketSnapshotNames = []byte("snapshot-names")
	bucketGroups        = []byte("groups")
	bucketGroupNames    = []byte("group-names")
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("record not found")

// ErrNameTaken is returned when another record already uses the name.
var ErrNameTaken = errors.New("name already used by another record")

// ErrCapacity is returned by the Insert functions when the new record would push
// the provisioned total past the capacity.
var ErrCapacity = errors.New("not enough capacity")

// Store is the record database.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the database at path. The file lock makes a
// second process on the same pool fail here instead of corrupting records.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketVolumes, bucketVolumeNames, bucketSnapshots, bucketSnapshotNames, bucketGroups, bucketGroupNames} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Check fails when the database can no longer be read.
func (s *Store) Check() error { return s.db.View(func(*bolt.Tx) error { return nil }) }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Used returns the provisioned bytes: all volume and snapshot records, in any state.
func (s *Store) Used() (int64, error) {
	var used int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		used, err = usedIn(tx)
		return err
	})
	return used, err
}

func usedIn(tx *bolt.Tx) (int64, error) {
	var used int64
	err := tx.Bucket(bucketVolumes).ForEach(func(_, v []byte) error {
		var rec Volume
		if err := json.Unmarshal(v, &rec); err != nil {
			return err
		}
		used += max(rec.SizeBytes, rec.ExpandingTo)
		return nil
	})
	if err != nil {
		return 0, err
	}
	err = tx.Bucket(bucketSnapshots).ForEach(func(_, v []byte) error {
		var rec Snapshot
		if err := json.Unmarshal(v, &rec); err != nil {
			return err
		}
		used += rec.SizeBytes
		return nil
	})
	return used, err
}

// checkCapacity fails with ErrCapacity when adding extra bytes exceeds capacity
// (capacity <= 0 means unlimited).
func checkCapacity(tx *bolt.Tx, extra, capacity int64) error {
	if capacity <= 0 || extra <= 0 {
		return nil
	}
	used, err := usedIn(tx)
	if err != nil {
		return err
	}
	if used+extra > capacity {
		return fmt.Errorf("%w: %d bytes requested, %d of %d bytes free", ErrCapacity, extra, max(capacity-used, 0), capacity)
	}
	return nil
}

func put(tx *bolt.Tx, bucket []byte, id string, rec any) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(id), data)
}

func get(tx *bolt.Tx, bucket []byte, id string, rec any) error {
	data := tx.Bucket(bucket).Get([]byte(id))
	if data == nil {
		return ErrNotFound
	}
	return json.Unmarshal(data, rec)
}

// ids returns the keys of bucket in order, starting at the first key >= from.
func ids(tx *bolt.Tx, bucket []byte, from string) []string {
	var out []string
	c := tx.Bucket(bucket).Cursor()
	for k, _ := c.Seek([]byte(from)); k != nil; k, _ = c.Next() {
		out = append(out, string(k))
	}
	return out
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
