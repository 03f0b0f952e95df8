package nvme

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	// A namespace block device: the multipath head nvme<S>n<N>, or the plain
	// namespace when multipath is off. Per-path nodes (nvme<X>c<Y>n<Z>) and
	// char devices (ng<X>n<Y>) have other names.
	namespaceName  = regexp.MustCompile(`^nvme[0-9]+n[0-9]+$`)
	controllerName = regexp.MustCompile(`^nvme[0-9]+$`)
)

// sysfs reads the kernel's view of NVMe subsystems under a configurable root
// so that unit tests can point it at a fake tree.
type sysfs struct{ root string }

// nvmeSubsystem is one /sys/class/nvme-subsystem/nvme-subsys<N>.
type nvmeSubsystem struct {
	dir         string
	nqn         string
	serial      string   // trimmed: the kernel pads it with spaces to 20 characters
	namespaces  []string // block device names, sorted
	controllers []string // nvme<X>, sorted
}

func (s sysfs) readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// subsystems lists every NVMe subsystem the host knows.
func (s sysfs) subsystems() ([]nvmeSubsystem, error) {
	classDir := filepath.Join(s.root, "class", "nvme-subsystem")
	entries, err := os.ReadDir(classDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no NVMe subsystem yet: the class appears with the first one
	}
	if err != nil {
		return nil, err
	}
	var subs []nvmeSubsystem
	for _, e := range entries {
		dir := filepath.Join(classDir, e.Name())
		sub := nvmeSubsystem{
			dir:    dir,
			nqn:    s.readTrim(filepath.Join(dir, "subsysnqn")),
			serial: s.readTrim(filepath.Join(dir, "serial")),
		}
		children, err := os.ReadDir(dir)
		if err != nil {
			continue // disappeared while we looked (a concurrent disconnect)
		}
		for _, c := range children {
			switch {
			case namespaceName.MatchString(c.Name()):
				sub.namespaces = append(sub.namespaces, c.Name())
			case controllerName.MatchString(c.Name()):
				sub.controllers = append(sub.controllers, c.Name())
			}
		}
		if len(sub.namespaces) == 0 {
			// Without multipath the namespaces hang under each controller.
			for _, ctrl := range sub.controllers {
				ctrlChildren, _ := os.ReadDir(filepath.Join(s.root, "class", "nvme", ctrl))
				for _, c := range ctrlChildren {
					if namespaceName.MatchString(c.Name()) {
						sub.namespaces = append(sub.namespaces, c.Name())
					}
				}
			}
		}
		sort.Strings(sub.namespaces)
		sort.Strings(sub.controllers)
		subs = append(subs, sub)
	}
	return subs, nil
}

// byNQN returns the subsystem with the given NQN, or nil.
func (s sysfs) byNQN(nqn string) (*nvmeSubsystem, error) {
	subs, err := s.subsystems()
	if err != nil {
		return nil, err
	}
	for i := range subs {
		if subs[i].nqn == nqn {
			return &subs[i], nil
		}
	}
	return nil, nil
}

// byNamespace returns the subsystem that holds block device dev, or nil.
func (s sysfs) byNamespace(dev string) (*nvmeSubsystem, error) {
	subs, err := s.subsystems()
	if err != nil {
		return nil, err
	}
	for i := range subs {
		for _, ns := range subs[i].namespaces {
			if ns == dev {
				return &subs[i], nil
			}
		}
	}
	return nil, nil
}

// namespaceUUID is the UUID the namespace reports ("" when it reports none).
func (s sysfs) namespaceUUID(dev string) string {
	return s.readTrim(filepath.Join(s.root, "block", dev, "uuid"))
}

// sizeBytes is the current size of block device dev.
func (s sysfs) sizeBytes(dev string) (int64, error) {
	v := s.readTrim(filepath.Join(s.root, "block", dev, "size"))
	sectors, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %q is not a number of sectors", dev, v)
	}
	return sectors * 512, nil
}
