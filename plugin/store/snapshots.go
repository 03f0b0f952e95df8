package store

import (
	"encoding/json"

	bolt "go.etcd.io/bbolt"
)

// InsertSnapshot adds a new snapshot record and its name index in one
// transaction, refusing it when the name is taken or capacity would be exceeded.
func (s *Store) InsertSnapshot(rec *Snapshot, capacity int64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSnapshotNames).Get([]byte(rec.Name)) != nil {
			return ErrNameTaken
		}
		if err := checkCapacity(tx, rec.SizeBytes, capacity); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSnapshotNames).Put([]byte(rec.Name), []byte(rec.ID)); err != nil {
			return err
		}
		return put(tx, bucketSnapshots, rec.ID, rec)
	})
}

// UpdateSnapshot replaces an existing snapshot record.
func (s *Store) UpdateSnapshot(rec *Snapshot) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSnapshots).Get([]byte(rec.ID)) == nil {
			return ErrNotFound
		}
		return put(tx, bucketSnapshots, rec.ID, rec)
	})
}

// Snapshot returns the record of snapshot id.
func (s *Store) Snapshot(id string) (*Snapshot, error) {
	var rec Snapshot
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx, bucketSnapshots, id, &rec) })
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// SnapshotByName returns the record of the snapshot called name.
func (s *Store) SnapshotByName(name string) (*Snapshot, error) {
	var rec Snapshot
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketSnapshotNames).Get([]byte(name))
		if id == nil {
			return ErrNotFound
		}
		return get(tx, bucketSnapshots, string(id), &rec)
	})
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// DeleteSnapshot removes snapshot id and its name. A missing record is success.
func (s *Store) DeleteSnapshot(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var rec Snapshot
		if err := get(tx, bucketSnapshots, id, &rec); err != nil {
			if err == ErrNotFound {
				return nil
			}
			return err
		}
		names := tx.Bucket(bucketSnapshotNames)
		if string(names.Get([]byte(rec.Name))) == id {
			if err := names.Delete([]byte(rec.Name)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketSnapshots).Delete([]byte(id))
	})
}

// Snapshots returns snapshot records ordered by ID, starting at the first ID >=
// from, keeping only those keep accepts (nil: all), at most limit of them (limit
// <= 0: all). next is the ID to continue from, or "".
func (s *Store) Snapshots(from string, limit int, keep func(*Snapshot) bool) (recs []*Snapshot, next string, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		for _, id := range ids(tx, bucketSnapshots, from) {
			var rec Snapshot
			if err := json.Unmarshal(tx.Bucket(bucketSnapshots).Get([]byte(id)), &rec); err != nil {
				return err
			}
			if keep != nil && !keep(&rec) {
				continue
			}
			if limit > 0 && len(recs) == limit {
				next = id
				return nil
			}
			recs = append(recs, &rec)
		}
		return nil
	})
	return recs, next, err
}
