package store

import (
	"encoding/json"

	bolt "go.etcd.io/bbolt"
)

// InsertVolume adds a new volume record and its name index in one transaction,
// refusing it when the name is taken or the pool capacity would be exceeded.
// Doing the capacity check inside the write transaction makes it race-free
// between concurrent creates of different names.
func (s *Store) InsertVolume(rec *Volume, capacity int64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketVolumeNames).Get([]byte(rec.Name)) != nil {
			return ErrNameTaken
		}
		if err := checkCapacity(tx, rec.SizeBytes, capacity); err != nil {
			return err
		}
		if err := tx.Bucket(bucketVolumeNames).Put([]byte(rec.Name), []byte(rec.ID)); err != nil {
			return err
		}
		return put(tx, bucketVolumes, rec.ID, rec)
	})
}

// UpdateVolume replaces an existing volume record.
func (s *Store) UpdateVolume(rec *Volume) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketVolumes).Get([]byte(rec.ID)) == nil {
			return ErrNotFound
		}
		return put(tx, bucketVolumes, rec.ID, rec)
	})
}

// BeginExpandVolume records that volume id is being grown to newSize, after
// checking the extra bytes fit the capacity.
func (s *Store) BeginExpandVolume(id string, newSize, capacity int64) (*Volume, error) {
	var rec Volume
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := get(tx, bucketVolumes, id, &rec); err != nil {
			return err
		}
		if err := checkCapacity(tx, newSize-max(rec.SizeBytes, rec.ExpandingTo), capacity); err != nil {
			return err
		}
		rec.ExpandingTo = newSize
		return put(tx, bucketVolumes, id, &rec)
	})
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// Volume returns the record of volume id.
func (s *Store) Volume(id string) (*Volume, error) {
	var rec Volume
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx, bucketVolumes, id, &rec) })
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// VolumeByName returns the record of the volume called name.
func (s *Store) VolumeByName(name string) (*Volume, error) {
	var rec Volume
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketVolumeNames).Get([]byte(name))
		if id == nil {
			return ErrNotFound
		}
		return get(tx, bucketVolumes, string(id), &rec)
	})
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// DeleteVolume removes volume id and its name. A missing record is success.
func (s *Store) DeleteVolume(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var rec Volume
		if err := get(tx, bucketVolumes, id, &rec); err != nil {
			if err == ErrNotFound {
				return nil
			}
			return err
		}
		names := tx.Bucket(bucketVolumeNames)
		if string(names.Get([]byte(rec.Name))) == id {
			if err := names.Delete([]byte(rec.Name)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketVolumes).Delete([]byte(id))
	})
}

// Volumes returns volume records ordered by ID, starting at the first ID >= from,
// at most limit of them (limit <= 0: all). next is the ID to continue from, or "".
func (s *Store) Volumes(from string, limit int) (recs []*Volume, next string, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		all := ids(tx, bucketVolumes, from)
		if limit > 0 && len(all) > limit {
			next = all[limit]
			all = all[:limit]
		}
		for _, id := range all {
			var rec Volume
			if err := json.Unmarshal(tx.Bucket(bucketVolumes).Get([]byte(id)), &rec); err != nil {
				return err
			}
			recs = append(recs, &rec)
		}
		return nil
	})
	return recs, next, err
}

// AttachedNodes returns the nodes of rec's attachments in a stable order.
func (rec *Volume) AttachedNodes() []string { return sortedKeys(rec.Attachments) }
