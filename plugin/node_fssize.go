package plugin

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// needsGrow reports whether the filesystem of rec can grow: its device is
// writable and formatted (mount-utils' ResizeFs.NeedResize) and the filesystem
// ends more than one block before the device does. NeedResize alone answers
// true for every ext and xfs filesystem (it leaves the size check to resize2fs
// and xfs_growfs); comparing the sizes here keeps every restage from running
// the grow tools, and from claiming it grew something, when they match.
func (n *NodeServer) needsGrow(rec *nodeRecord) (bool, error) {
	if need, err := n.mounter.NeedResize(rec.Device, rec.StagingPath); err != nil || !need {
		return need, err
	}
	devSize, err := deviceSize(rec.Device)
	if err != nil {
		return false, err
	}
	var tool []string
	var keys geometryKeys
	switch {
	case strings.HasPrefix(rec.FsType, "ext"):
		tool, keys = []string{"dumpe2fs", "-h", rec.Device}, extGeometry
	case rec.FsType == "xfs":
		// xfs_io, not xfs_info: the latter is a shell script around
		// xfs_spaceman, which the plugin image does not carry.
		tool, keys = []string{"xfs_io", "-r", "-c", "statfs", rec.StagingPath}, xfsGeometry
	default:
		return false, fmt.Errorf("cannot tell the size of a %q filesystem", rec.FsType)
	}
	out, err := n.mounter.Command(tool[0], tool[1:]...).Output()
	var blockSize, blocks uint64
	if err == nil {
		blockSize, blocks, err = keys.parse(out)
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", strings.Join(tool, " "), err)
	}
	return devSize > (blocks+1)*blockSize, nil
}

// deviceSize returns a block device's size in bytes (the offset of its end).
func deviceSize(device string) (uint64, error) {
	f, err := os.Open(device)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", device, err)
	}
	return uint64(end), nil
}

// Where each tool states a filesystem's block size and block count.
var (
	extGeometry = geometryKeys{sep: ":", size: "Block size", count: "Block count"}     // dumpe2fs -h
	xfsGeometry = geometryKeys{sep: "=", size: "geom.bsize", count: "geom.datablocks"} // xfs_io -c statfs
)

type geometryKeys struct{ sep, size, count string }

// parse reads the block size and count from the tool's "key<sep> value" lines.
func (k geometryKeys) parse(out []byte) (blockSize, blocks uint64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), k.sep)
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case k.size:
			blockSize, err = strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		case k.count:
			blocks, err = strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	if blockSize == 0 || blocks == 0 {
		return 0, 0, fmt.Errorf("no %q and %q in %q", k.size, k.count, out)
	}
	return blockSize, blocks, nil
}
