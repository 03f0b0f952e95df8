package nvme

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakeConfigfs emulates the parts of nvmet's configfs behaviour the target
// relies on, over a real temp directory: mkdir creates attribute files and
// default groups, rmdir removes them but refuses user-made children, and
// writes follow the kernel's rules (no device_uuid change on an enabled
// namespace, no address change on an enabled port, enable needs a device).
type fakeConfigfs struct {
	osFS
	root string
	ops  []string // "mkdir <rel>", "write <rel>=<value>", ... in call order
}

func newFakeConfigfs(t *testing.T) *fakeConfigfs {
	t.Helper()
	root := filepath.Join(t.TempDir(), "nvmet")
	for _, d := range []string{"subsystems", "ports", "hosts"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &fakeConfigfs{root: root}
}

func (f *fakeConfigfs) rel(p string) []string {
	r, _ := filepath.Rel(f.root, p)
	return strings.Split(r, string(filepath.Separator))
}

func (f *fakeConfigfs) log(op, p string) { f.ops = append(f.ops, op+" "+strings.Join(f.rel(p), "/")) }

// kind names the configfs item at p: subsystem, namespace, port, host or "".
func (f *fakeConfigfs) kind(p string) string {
	r := f.rel(p)
	switch {
	case len(r) == 2 && r[0] == "subsystems":
		return "subsystem"
	case len(r) == 4 && r[0] == "subsystems" && r[2] == "namespaces":
		return "namespace"
	case len(r) == 2 && r[0] == "ports":
		return "port"
	case len(r) == 2 && r[0] == "hosts":
		return "host"
	}
	return ""
}

var defaults = map[string]struct {
	attrs  map[string]string
	groups []string
}{
	"subsystem": {map[string]string{"attr_allow_any_host": "1\n", "attr_serial": "4b2f8e1a9c0d3e57\n", "attr_model": "Linux\n"}, []string{"namespaces", "allowed_hosts"}},
	"namespace": {map[string]string{"device_path": "\n", "device_uuid": "00000000-0000-0000-0000-000000000000\n", "enable": "0\n", "buffered_io": "0\n", "revalidate_size": ""}, nil},
	"port":      {map[string]string{"addr_trtype": "\n", "addr_adrfam": "\n", "addr_traddr": "\n", "addr_trsvcid": "\n"}, []string{"subsystems"}},
	"host":      {},
}

func (f *fakeConfigfs) Mkdir(p string) error {
	f.log("mkdir", p)
	k := f.kind(p)
	if k == "" {
		return &fs.PathError{Op: "mkdir", Path: p, Err: syscall.EPERM}
	}
	if err := os.Mkdir(p, 0o755); err != nil {
		return err
	}
	for name, v := range defaults[k].attrs {
		if err := os.WriteFile(filepath.Join(p, name), []byte(v), 0o644); err != nil {
			return err
		}
	}
	for _, g := range defaults[k].groups {
		if err := os.Mkdir(filepath.Join(p, g), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeConfigfs) Rmdir(p string) error {
	f.log("rmdir", p)
	k := f.kind(p)
	if k == "" {
		return &fs.PathError{Op: "rmdir", Path: p, Err: syscall.EPERM}
	}
	if _, err := os.Lstat(p); err != nil {
		return err
	}
	for _, g := range defaults[k].groups {
		if entries, _ := os.ReadDir(filepath.Join(p, g)); len(entries) > 0 {
			return &fs.PathError{Op: "rmdir", Path: p, Err: syscall.ENOTEMPTY}
		}
	}
	if k == "host" {
		// The kernel keeps a host that an allowed_hosts link still points at.
		subs, _ := os.ReadDir(filepath.Join(f.root, "subsystems"))
		for _, s := range subs {
			if _, err := os.Lstat(filepath.Join(f.root, "subsystems", s.Name(), "allowed_hosts", filepath.Base(p))); err == nil {
				return &fs.PathError{Op: "rmdir", Path: p, Err: syscall.EBUSY}
			}
		}
	}
	for name := range defaults[k].attrs {
		os.Remove(filepath.Join(p, name))
	}
	for _, g := range defaults[k].groups {
		os.Remove(filepath.Join(p, g))
	}
	return syscall.Rmdir(p)
}

func (f *fakeConfigfs) Symlink(target, link string) error {
	f.log("symlink", link)
	if !filepath.IsAbs(target) {
		return &fs.PathError{Op: "symlink", Path: link, Err: syscall.ENOENT}
	}
	if _, err := os.Stat(target); err != nil {
		return err
	}
	r := f.rel(link)
	if len(r) == 4 && r[0] == "ports" {
		if tr, _ := os.ReadFile(filepath.Join(f.root, "ports", r[1], "addr_trtype")); strings.TrimSpace(string(tr)) == "" {
			return &fs.PathError{Op: "symlink", Path: link, Err: syscall.EINVAL}
		}
	}
	return os.Symlink(target, link)
}

func (f *fakeConfigfs) Unlink(link string) error {
	f.log("unlink", link)
	return syscall.Unlink(link)
}

func (f *fakeConfigfs) WriteFile(p, value string) error {
	f.ops = append(f.ops, fmt.Sprintf("write %s=%s", strings.Join(f.rel(p), "/"), value))
	dir, name := filepath.Split(p)
	dir = filepath.Clean(dir)
	if _, err := os.Stat(p); err != nil {
		return err // configfs attributes cannot be created
	}
	switch f.kind(dir) {
	case "namespace":
		enabled, _ := os.ReadFile(filepath.Join(dir, "enable"))
		on := strings.TrimSpace(string(enabled)) == "1"
		switch name {
		case "device_path", "device_uuid", "buffered_io":
			if on {
				return &fs.PathError{Op: "write", Path: p, Err: syscall.EBUSY}
			}
		case "enable":
			dev, _ := os.ReadFile(filepath.Join(dir, "device_path"))
			if value == "1" {
				if _, err := os.Stat(strings.TrimSpace(string(dev))); err != nil {
					return &fs.PathError{Op: "write", Path: p, Err: syscall.ENOENT}
				}
			}
		case "revalidate_size":
			if !on {
				return &fs.PathError{Op: "write", Path: p, Err: syscall.EINVAL}
			}
			return nil // write-only trigger
		}
	case "port":
		if links, _ := os.ReadDir(filepath.Join(dir, "subsystems")); len(links) > 0 {
			return &fs.PathError{Op: "write", Path: p, Err: syscall.EACCES}
		}
	}
	return os.WriteFile(p, []byte(value+"\n"), 0o644)
}

// writes returns the logged writes (for idempotency checks).
func (f *fakeConfigfs) writes() []string {
	var w []string
	for _, op := range f.ops {
		if strings.HasPrefix(op, "write ") || strings.HasPrefix(op, "symlink ") || strings.HasPrefix(op, "mkdir ") {
			w = append(w, op)
		}
	}
	return w
}

// tree lists every path under the root (for "nothing left" checks).
func (f *fakeConfigfs) tree(t *testing.T) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if r, _ := filepath.Rel(f.root, p); r != "." && r != "subsystems" && r != "ports" && r != "hosts" {
			paths = append(paths, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}
