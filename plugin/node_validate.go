package plugin

import (
	"path/filepath"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

// defaultFsType is what a mount volume gets when the capability names none.
const defaultFsType = "ext4"

// nodeCapability is a validated volume_capability as the node needs it.
type nodeCapability struct {
	block        bool
	fsType       string
	mountFlags   []string
	readerOnly   bool // a *_READER_ONLY access mode: never write, never format
	singleWriter bool // SINGLE_NODE_SINGLE_WRITER: at most one publish
}

// parseNodeCapability validates a capability with the same rules the
// controller applies (checkCapability), so node and controller never disagree
// on what a volume may be.
func parseNodeCapability(vc *csi.VolumeCapability) (nodeCapability, error) {
	c, err := checkCapability("volume_capability", vc)
	if err != nil {
		return nodeCapability{}, err
	}
	mode := csi.VolumeCapability_AccessMode_Mode(c.AccessMode)
	out := nodeCapability{
		block:        c.Block,
		fsType:       c.FsType,
		readerOnly:   mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY || mode == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		singleWriter: mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
	}
	if !out.block {
		if out.fsType == "" {
			out.fsType = defaultFsType
		}
		out.mountFlags = vc.GetMount().GetMountFlags()
	}
	return out, nil
}

// requirePath checks a path field is present and absolute.
func requirePath(field, path string) error {
	if path == "" {
		return errorf(codes.InvalidArgument, "%s is required", field)
	}
	if !filepath.IsAbs(path) {
		return errorf(codes.InvalidArgument, "%s %q must be an absolute path", field, path)
	}
	return nil
}

func requireVolumeID(id string) error {
	if id == "" {
		return errorf(codes.InvalidArgument, "volume_id is required")
	}
	return nil
}

// mkfsOptions turns the mkfs parameters the controller copied into the volume
// context into mkfs arguments for fsType. They are checked again here because
// a statically provisioned PV can carry any volume context.
func mkfsOptions(fsType string, volumeContext map[string]string) ([]string, error) {
	var args []string
	for _, key := range []string{ParamBlockSize, ParamInodeSize} {
		v, ok := volumeContext[key]
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 || n&(n-1) != 0 {
			return nil, errorf(codes.InvalidArgument, "volume_context[%q]: %q is not a power-of-two byte count", key, v)
		}
		switch {
		case fsType == "xfs" && key == ParamBlockSize:
			args = append(args, "-b", "size="+v)
		case fsType == "xfs" && key == ParamInodeSize:
			args = append(args, "-i", "size="+v)
		case key == ParamBlockSize: // ext2/3/4
			args = append(args, "-b", v)
		default:
			args = append(args, "-I", v)
		}
	}
	return args, nil
}
