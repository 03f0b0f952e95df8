package plugin

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/csi-hub/csi-hub/plugin/pool"
)

// StorageClass parameters the driver understands. The node reads the mkfs ones
// from the volume context, where CreateVolume copies every known parameter.
const (
	// ParamType is "thin" (sparse file, the default) or "thick" (preallocated). Mutable.
	ParamType = pool.ParamType
	// ParamTier is a free-form label kept with the volume. Mutable.
	ParamTier = "tier"
	// ParamBlockSize is the filesystem block size the node passes to mkfs (bytes).
	ParamBlockSize = "blockSize"
	// ParamInodeSize is the inode size the node passes to mkfs (bytes).
	ParamInodeSize = "inodeSize"
)

// reservedParamPrefix marks keys the CO adds (PVC name, fstype...); they are
// ignored rather than rejected.
const reservedParamPrefix = "csi.storage.k8s.io/"

var mutableParams = map[string]bool{ParamType: true, ParamTier: true}

// volumeParams checks StorageClass parameters and returns the ones to keep.
// field names the request field for error messages.
func volumeParams(field string, params map[string]string, onlyMutable bool) (map[string]string, error) {
	out := map[string]string{}
	for _, k := range sortedKeys(params) {
		v := params[k]
		if strings.HasPrefix(k, reservedParamPrefix) && !onlyMutable {
			continue
		}
		if onlyMutable && !mutableParams[k] {
			return nil, errorf(codes.InvalidArgument, "%s: parameter %q is not mutable (mutable: %s, %s)", field, k, ParamType, ParamTier)
		}
		switch k {
		case ParamType:
			if v != pool.TypeThin && v != pool.TypeThick {
				return nil, errorf(codes.InvalidArgument, "%s[%q]: %q is not %q or %q", field, k, v, pool.TypeThin, pool.TypeThick)
			}
		case ParamTier:
		case ParamBlockSize, ParamInodeSize:
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 || n&(n-1) != 0 {
				return nil, errorf(codes.InvalidArgument, "%s[%q]: %q is not a power-of-two byte count", field, k, v)
			}
		default:
			return nil, errorf(codes.InvalidArgument, "%s: unknown parameter %q (known: %s, %s, %s, %s)",
				field, k, ParamType, ParamTier, ParamBlockSize, ParamInodeSize)
		}
		out[k] = v
	}
	return out, nil
}

// snapshotParams accepts only the CO's reserved keys: snapshots have no options.
func snapshotParams(params map[string]string) error {
	for _, k := range sortedKeys(params) {
		if !strings.HasPrefix(k, reservedParamPrefix) {
			return errorf(codes.InvalidArgument, "parameters: unknown snapshot parameter %q (snapshots take none)", k)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func equalParams(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func formatParams(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%s", k, m[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}
