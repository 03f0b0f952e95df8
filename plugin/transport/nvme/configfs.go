package nvme

import (
	"errors"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// configFS is the slice of the filesystem API the target uses on the nvmet
// configfs tree. configfs creates and removes attribute files and default groups
// by itself on mkdir/rmdir, which a plain directory does not; unit tests swap in
// an emulation over a temp directory through this interface.
type configFS interface {
	Mkdir(path string) error
	Rmdir(path string) error
	Symlink(target, link string) error
	Unlink(link string) error
	WriteFile(path, value string) error
	ReadFile(path string) (string, error)
	ReadDir(path string) ([]string, error)
	Lstat(path string) (fs.FileInfo, error)
}

// osFS is the real configfs.
type osFS struct{}

func (osFS) Mkdir(path string) error           { return os.Mkdir(path, 0o755) }
func (osFS) Rmdir(path string) error           { return unix.Rmdir(path) }
func (osFS) Symlink(target, link string) error { return os.Symlink(target, link) }
func (osFS) Unlink(link string) error          { return unix.Unlink(link) }
func (osFS) Lstat(path string) (fs.FileInfo, error) {
	return os.Lstat(path)
}

// WriteFile writes an attribute the way `echo value > attr` does: one write
// into the existing file, never creating or truncating it (configfs attributes
// cannot be created, and the kernel sees exactly one store call).
func (osFS) WriteFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

func (osFS) ReadFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

func (osFS) ReadDir(path string) ([]string, error) {
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// ensureDir creates a configfs group; one that exists already is success.
func ensureDir(cfs configFS, path string) error {
	err := cfs.Mkdir(path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return nil
	}
	return err
}

// setAttr writes value to an attribute unless it already holds it. Skipping
// equal writes keeps Export idempotent on attributes the kernel refuses to
// change once in use (serial, model, device_uuid of an enabled namespace).
func setAttr(cfs configFS, path, value string) error {
	if cur, err := cfs.ReadFile(path); err == nil && strings.TrimSpace(cur) == value {
		return nil
	}
	return cfs.WriteFile(path, value)
}

// readAttr reads an attribute without its trailing newline.
func readAttr(cfs configFS, path string) (string, error) {
	s, err := cfs.ReadFile(path)
	return strings.TrimSpace(s), err
}

// removeLink removes a configfs symlink; a missing one is success.
func removeLink(cfs configFS, link string) error {
	err := cfs.Unlink(link)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// removeDir removes a configfs group; a missing one is success.
func removeDir(cfs configFS, path string) error {
	err := cfs.Rmdir(path)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// listDir lists a group; a missing one is empty.
func listDir(cfs configFS, path string) ([]string, error) {
	names, err := cfs.ReadDir(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return names, err
}

func exists(cfs configFS, path string) bool {
	_, err := cfs.Lstat(path)
	return err == nil
}
