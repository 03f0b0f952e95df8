package store

import (
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Group is the record of one group snapshot. Its members are Snapshot records
// with GroupID set; the group and all its members change state together, in
// one transaction, so a crash leaves the whole group or none of it.
type Group struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	SnapshotIDs []string  `json:"snapshotIDs"`
	State       State     `json:"state"`
	CreatedAt   time.Time `json:"createdAt"`
}

// InsertGroup adds a group and its member snapshot records (each with
// GroupID = rec.ID) in one transaction, refusing it when the name is taken or
// the members together would exceed capacity. Members get no entry in the
// snapshot name index: they are found through the group.
func (s *Store) InsertGroup(rec *Group, members []*Snapshot, capacity int64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketGroupNames).Get([]byte(rec.Name)) != nil {
			return ErrNameTaken
		}
		var size int64
		for _, m := range members {
			size += m.SizeBytes
		}
		if err := checkCapacity(tx, size, capacity); err != nil {
			return err
		}
		if err := tx.Bucket(bucketGroupNames).Put([]byte(rec.Name), []byte(rec.ID)); err != nil {
			return err
		}
		for _, m := range members {
			if err := put(tx, bucketSnapshots, m.ID, m); err != nil {
				return err
			}
		}
		return put(tx, bucketGroups, rec.ID, rec)
	})
}

// SetGroupState moves a group and all its members to state in one transaction.
func (s *Store) SetGroupState(id string, state State) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var rec Group
		if err := get(tx, bucketGroups, id, &rec); err != nil {
			return err
		}
		rec.State = state
		for _, sid := range rec.SnapshotIDs {
			var m Snapshot
			if err := get(tx, bucketSnapshots, sid, &m); err != nil {
				if err == ErrNotFound {
					continue
				}
				return err
			}
			m.State = state
			if err := put(tx, bucketSnapshots, m.ID, &m); err != nil {
				return err
			}
		}
		return put(tx, bucketGroups, rec.ID, &rec)
	})
}

// DeleteGroup removes a group, its name and all its member records in one
// transaction. A missing group is success.
func (s *Store) DeleteGroup(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var rec Group
		if err := get(tx, bucketGroups, id, &rec); err != nil {
			if err == ErrNotFound {
				return nil
			}
			return err
		}
		names := tx.Bucket(bucketGroupNames)
		if string(names.Get([]byte(rec.Name))) == id {
			if err := names.Delete([]byte(rec.Name)); err != nil {
				return err
			}
		}
		for _, sid := range rec.SnapshotIDs {
			if err := tx.Bucket(bucketSnapshots).Delete([]byte(sid)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketGroups).Delete([]byte(id))
	})
}

// Group returns group id with its member records, in the group's order.
func (s *Store) Group(id string) (*Group, []*Snapshot, error) {
	var rec Group
	var members []*Snapshot
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := get(tx, bucketGroups, id, &rec); err != nil {
			return err
		}
		var err error
		members, err = membersIn(tx, &rec)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return &rec, members, nil
}

// GroupByName returns the group called name with its member records.
func (s *Store) GroupByName(name string) (*Group, []*Snapshot, error) {
	var id string
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketGroupNames).Get([]byte(name))
		if v == nil {
			return ErrNotFound
		}
		id = string(v)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return s.Group(id)
}

// Groups returns every group record, ordered by ID.
func (s *Store) Groups() ([]*Group, error) {
	var out []*Group
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(_, v []byte) error {
			var rec Group
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			out = append(out, &rec)
			return nil
		})
	})
	return out, err
}

func membersIn(tx *bolt.Tx, rec *Group) ([]*Snapshot, error) {
	out := make([]*Snapshot, 0, len(rec.SnapshotIDs))
	for _, sid := range rec.SnapshotIDs {
		var m Snapshot
		if err := get(tx, bucketSnapshots, sid, &m); err != nil {
			return nil, err
		}
		out = append(out, &m)
	}
	return out, nil
}
