package fakedriver

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// supportedFsTypes are the mount fs_type values the fake accepts ("" means
// the driver default), so a caller passing a wrong fstype sees a real error.
var supportedFsTypes = []string{"", "ext2", "ext3", "ext4", "xfs", "btrfs"}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// requireCap rejects an RPC whose controller capability is switched off.
func (d *Driver) requireCap(c csi.ControllerServiceCapability_RPC_Type) error {
	if !d.controllerOn[c] {
		return status.Errorf(codes.Unimplemented, "%s is not enabled on driver %s", c, d.opts.Name)
	}
	return nil
}

func (d *Driver) validateCapability(field string, c *csi.VolumeCapability) error {
	if c == nil {
		return invalid("%s is required", field)
	}
	if c.GetBlock() == nil && c.GetMount() == nil {
		return invalid("%s.access_type must be block or mount", field)
	}
	if m := c.GetMount(); m != nil && !slices.Contains(supportedFsTypes, m.FsType) {
		return invalid("%s.mount.fs_type %q is not supported (supported: %q)", field, m.FsType, supportedFsTypes[1:])
	}
	mode := c.GetAccessMode().GetMode()
	switch mode {
	case csi.VolumeCapability_AccessMode_UNKNOWN:
		return invalid("%s.access_mode is required", field)
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER, csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		if !d.controllerOn[csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER] {
			return invalid("%s.access_mode %s needs controller capability SINGLE_NODE_MULTI_WRITER, which driver %s does not have", field, mode, d.opts.Name)
		}
	}
	return nil
}

func (d *Driver) validateCapabilities(field string, caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return invalid("%s is required", field)
	}
	for i, c := range caps {
		if err := d.validateCapability(field+"["+strconv.Itoa(i)+"]", c); err != nil {
			return err
		}
	}
	return nil
}

func wantsBlock(caps []*csi.VolumeCapability) bool {
	return slices.ContainsFunc(caps, func(c *csi.VolumeCapability) bool { return c.GetBlock() != nil })
}

func singleNode(mode csi.VolumeCapability_AccessMode_Mode) bool {
	switch mode {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		return true
	}
	return false
}

// validateMutable checks mutable parameters against Options.MutableParameterKeys
// and InfeasibleMutableParameters.
func (d *Driver) validateMutable(field string, params map[string]string) error {
	for k, v := range params {
		if !d.mutableKeys[k] {
			return invalid("%s: key %q is not a mutable parameter of driver %s (allowed: %q)", field, k, d.opts.Name, d.opts.MutableParameterKeys)
		}
		if bad, ok := d.opts.InfeasibleMutableParameters[k]; ok && bad == v {
			return invalid("%s: %s=%q is infeasible for driver %s", field, k, v, d.opts.Name)
		}
	}
	return nil
}

// volumeSize turns a capacity range into a size in whole MiB, at least floor
// (the size of the content source).
func (d *Driver) volumeSize(cr *csi.CapacityRange, floor int64) (int64, error) {
	req, lim := cr.GetRequiredBytes(), cr.GetLimitBytes()
	if req < 0 {
		return 0, invalid("capacity_range.required_bytes must not be negative, got %d", req)
	}
	if lim < 0 {
		return 0, invalid("capacity_range.limit_bytes must not be negative, got %d", lim)
	}
	if lim > 0 && req > lim {
		return 0, invalid("capacity_range.required_bytes %d exceeds capacity_range.limit_bytes %d", req, lim)
	}
	if lim > 0 && floor > lim {
		return 0, status.Errorf(codes.OutOfRange, "capacity_range.limit_bytes %d is smaller than the content source (%d bytes)", lim, floor)
	}
	size := req
	if size == 0 {
		size = d.opts.DefaultVolumeBytes
	}
	size = roundUp(max(size, floor))
	if lim > 0 && size > lim {
		// The default size or rounding overshot the limit: take the largest
		// whole MiB under it, if that still satisfies the request.
		size = lim / sizeGranularity * sizeGranularity
		if size == 0 || size < req || size < floor {
			return 0, status.Errorf(codes.OutOfRange, "capacity_range [%d, %d] holds no whole MiB of at least %d bytes", req, lim, max(req, floor))
		}
	}
	return size, nil
}

func roundUp(n int64) int64 {
	return (n + sizeGranularity - 1) / sizeGranularity * sizeGranularity
}

// fitsRange reports whether an existing size satisfies a requested range.
func fitsRange(size int64, cr *csi.CapacityRange) bool {
	return size >= cr.GetRequiredBytes() && (cr.GetLimitBytes() == 0 || size <= cr.GetLimitBytes())
}

func (d *Driver) knownZone(zone string) bool { return slices.Contains(d.opts.Zones, zone) }

// placeVolume picks the zone for a new volume: the first preferred topology
// that is allowed, else the first allowed requisite one. Without topology the
// requirements are ignored, as drivers without the capability do.
func (d *Driver) placeVolume(req *csi.TopologyRequirement) ([]map[string]string, error) {
	if !d.opts.Topology {
		return nil, nil
	}
	key := d.opts.TopologyKey
	if len(req.GetRequisite()) == 0 && len(req.GetPreferred()) == 0 {
		return []map[string]string{{key: d.opts.NodeZone}}, nil
	}
	var allowed []string
	if len(req.GetRequisite()) > 0 {
		for _, t := range req.GetRequisite() {
			if z := t.GetSegments()[key]; d.knownZone(z) {
				allowed = append(allowed, z)
			}
		}
	} else {
		allowed = d.opts.Zones
	}
	for _, t := range req.GetPreferred() {
		if z := t.GetSegments()[key]; slices.Contains(allowed, z) {
			return []map[string]string{{key: z}}, nil
		}
	}
	if len(allowed) == 0 {
		return nil, status.Errorf(codes.ResourceExhausted,
			"accessibility_requirements.requisite: no topology with key %s in a zone this backend serves (%q)", key, d.opts.Zones)
	}
	return []map[string]string{{key: allowed[0]}}, nil
}

// cloneZone places a clone: the backend copies within a zone, so the clone
// lands in its source's zone, which the requisite topology must allow.
func (d *Driver) cloneZone(src *Volume, req *csi.TopologyRequirement) ([]map[string]string, error) {
	key := d.opts.TopologyKey
	zone := src.AccessibleTopology[0][key]
	if len(req.GetRequisite()) > 0 && !slices.ContainsFunc(req.GetRequisite(), func(t *csi.Topology) bool {
		return t.GetSegments()[key] == zone
	}) {
		return nil, status.Errorf(codes.ResourceExhausted,
			"accessibility_requirements.requisite excludes zone %s of volume_content_source.volume %s; clones stay in their source's zone", zone, src.ID)
	}
	return []map[string]string{{key: zone}}, nil
}

func toCSITopology(segs []map[string]string) []*csi.Topology {
	var out []*csi.Topology
	for _, s := range segs {
		out = append(out, &csi.Topology{Segments: s})
	}
	return out
}

// pageToken parses a ListVolumes/ListSnapshots starting_token: the index of
// the next entry.
func pageToken(token string, total int) (int, error) {
	if token == "" {
		return 0, nil
	}
	i, err := strconv.Atoi(token)
	if err != nil || i < 0 || i > total {
		return 0, status.Errorf(codes.Aborted, "starting_token %q is not valid", token)
	}
	return i, nil
}

func page[T any](all []T, token string, maxEntries int32) ([]T, string, error) {
	if maxEntries < 0 {
		return nil, "", invalid("max_entries must not be negative, got %d", maxEntries)
	}
	start, err := pageToken(token, len(all))
	if err != nil {
		return nil, "", err
	}
	end := len(all)
	if maxEntries > 0 && start+int(maxEntries) < end {
		end = start + int(maxEntries)
	}
	next := ""
	if end < len(all) {
		next = fmt.Sprint(end)
	}
	return all[start:end], next, nil
}
