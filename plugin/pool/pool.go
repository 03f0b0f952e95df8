// Package pool manages the backing files of volumes and snapshots in the pool
// directory. Every file appears under its final name only when complete: it is
// written under a temporary name, fsync'd, renamed and the directory fsync'd, so
// after a crash a file under a final name is always whole.
package pool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	fileSuffix = ".img"
	tempPrefix = ".tmp-"
)

// ErrNoSpace is returned when the filesystem under the pool is full.
var ErrNoSpace = errors.New("no space left in the pool filesystem")

// Pool is a directory of backing files named <id>.img.
type Pool struct {
	dir string
}

// New opens the pool directory, creating it if needed.
func New(dir string) (*Pool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("create pool dir: %w", err)
	}
	return &Pool{dir: abs}, nil
}

// Dir is the absolute pool directory.
func (p *Pool) Dir() string { return p.dir }

// Path is the backing file of id (a volume or snapshot ID).
func (p *Pool) Path(id string) string { return filepath.Join(p.dir, id+fileSuffix) }

// Size returns the size of id's backing file; the error wraps os.ErrNotExist
// when there is none.
func (p *Pool) Size(id string) (int64, error) {
	fi, err := os.Stat(p.Path(id))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Create makes an empty backing file of size bytes for id: sparse, or fully
// allocated when thick so later writes cannot fail for lack of space.
func (p *Pool) Create(id string, size int64, thick bool) error {
	return p.publish(id, func(f *os.File) error {
		if err := f.Truncate(size); err != nil {
			return err
		}
		if thick {
			return allocate(f, size)
		}
		return nil
	})
}

// CreateFrom makes id's backing file as a copy of srcID's, grown to size bytes.
// The copy shares blocks (FICLONE) where the filesystem can, else it is a sparse
// copy of the source's data ranges.
func (p *Pool) CreateFrom(id, srcID string, size int64, thick bool) error {
	src, err := os.Open(p.Path(srcID))
	if err != nil {
		return fmt.Errorf("open source %s: %w", srcID, err)
	}
	defer src.Close()
	return p.publish(id, func(f *os.File) error {
		if err := copyFile(f, src); err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if size > fi.Size() {
			if err := f.Truncate(size); err != nil {
				return err
			}
		}
		if thick {
			return allocate(f, size)
		}
		return nil
	})
}

// Resize grows id's backing file to size (never shrinks), allocating the new
// range when thick.
func (p *Pool) Resize(id string, size int64, thick bool) error {
	return mapNoSpace(p.resize(id, size, thick))
}

func (p *Pool) resize(id string, size int64, thick bool) error {
	f, err := os.OpenFile(p.Path(id), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if size > fi.Size() {
		if err := f.Truncate(size); err != nil {
			return err
		}
	}
	if thick {
		if err := allocate(f, size); err != nil {
			return err
		}
	}
	return f.Sync()
}

// Remove deletes id's backing file. A missing file is success.
func (p *Pool) Remove(id string) error {
	if err := os.Remove(p.Path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return p.syncDir()
}

// Files lists the IDs of the backing files in the pool and the names of the
// temporary files an interrupted create left.
func (p *Pool) Files() (ids, temps []string, err error) {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tempPrefix):
			temps = append(temps, name)
		case strings.HasSuffix(name, fileSuffix):
			ids = append(ids, strings.TrimSuffix(name, fileSuffix))
		}
	}
	return ids, temps, nil
}

// RemoveTemp deletes a temporary file Files reported.
func (p *Pool) RemoveTemp(name string) error {
	if !strings.HasPrefix(name, tempPrefix) || strings.ContainsRune(name, '/') {
		return fmt.Errorf("%q is not a pool temporary file", name)
	}
	if err := os.Remove(filepath.Join(p.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// FSSize returns the total and available bytes of the filesystem under the pool.
func (p *Pool) FSSize() (total, avail int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p.dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Blocks) * st.Bsize, int64(st.Bavail) * st.Bsize, nil
}

// publish fills a temporary file with fill, then fsyncs and renames it to id's
// final name. On any failure the temporary file is removed.
func (p *Pool) publish(id string, fill func(*os.File) error) (err error) {
	f, err := os.CreateTemp(p.dir, tempPrefix+id+"-")
	if err != nil {
		return mapNoSpace(err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = mapNoSpace(err)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if err = fill(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), p.Path(id)); err != nil {
		return err
	}
	return p.syncDir()
}

func (p *Pool) syncDir() error {
	d, err := os.Open(p.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func allocate(f *os.File, size int64) error {
	if size == 0 {
		return nil
	}
	// Mode 0 allocates the holes and keeps existing data, so it also thickens clones.
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		return fmt.Errorf("preallocate %d bytes: %w", size, err)
	}
	return nil
}

func mapNoSpace(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: %v", ErrNoSpace, err)
	}
	return err
}
