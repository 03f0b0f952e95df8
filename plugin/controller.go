package plugin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/pool"
	"github.com/csi-hub/csi-hub/plugin/store"
	"github.com/csi-hub/csi-hub/plugin/transport"
)

// StoreFileName is the bbolt database of records inside the pool directory.
const StoreFileName = "csi-hub.db"

// ControllerConfig configures the controller service.
type ControllerConfig struct {
	DriverName string
	// NodeID is the storage host's node; loop volumes are pinned to it.
	NodeID string
	// PoolDir holds the backing files and the record store.
	PoolDir string
	// Capacity caps the provisioned bytes of all volumes and snapshots (sparse
	// files would otherwise overcommit the disk). 0: the pool filesystem's size.
	Capacity int64
	// Target exports volumes and grants nodes access to them.
	Target transport.Target
	// GroupCopy tunes how group snapshots capture their members; zero: defaults.
	GroupCopy pool.GroupOptions
}

// ControllerServer implements the CSI Controller service.
type ControllerServer struct {
	csi.UnimplementedControllerServer
	csi.UnimplementedGroupControllerServer
	cfg      ControllerConfig
	store    *store.Store
	pool     *pool.Pool
	target   transport.Target
	capacity int64
	topology map[string]string
	inFlight InFlight
}

// NewControllerServer opens the pool and its record store, reconciles them
// (finishing or rolling back whatever a crash interrupted) and exports every
// volume again, since exports may not survive a reboot.
func NewControllerServer(ctx context.Context, cfg ControllerConfig) (*ControllerServer, error) {
	if cfg.DriverName == "" || cfg.NodeID == "" || cfg.PoolDir == "" || cfg.Target == nil {
		return nil, fmt.Errorf("controller needs a driver name, node ID, pool dir and transport target")
	}
	p, err := pool.New(cfg.PoolDir)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(p.Dir(), StoreFileName))
	if err != nil {
		return nil, err
	}
	c := &ControllerServer{cfg: cfg, store: st, pool: p, target: cfg.Target, capacity: cfg.Capacity,
		topology: cfg.Target.AccessibleTopology()}
	if c.capacity <= 0 {
		total, _, err := p.FSSize()
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("size of pool filesystem: %w", err)
		}
		c.capacity = total
	}
	unexport := func(id string) error {
		return c.target.Unexport(ctx, transport.Volume{ID: id, BackingFile: p.Path(id)})
	}
	if _, err := pool.Reconcile(st, p, unexport); err != nil {
		st.Close()
		return nil, fmt.Errorf("reconcile pool: %w", err)
	}
	vols, _, err := st.Volumes("", 0)
	if err != nil {
		st.Close()
		return nil, err
	}
	for _, v := range vols {
		// One volume that cannot be exported (its file lost, say) must not keep
		// the driver from serving all the others; its publish will fail visibly.
		if _, err := p.Size(v.ID); err != nil {
			klog.ErrorS(err, "Not exporting volume without backing file", "volume", v.ID)
			continue
		}
		if err := c.target.Export(ctx, c.transportVolume(v)); err != nil {
			klog.ErrorS(err, "Export at start-up failed", "volume", v.ID, "transport", c.target.Name())
			continue
		}
		// Grants may not survive a reboot of the storage host either (nvmet's
		// configfs does not): renew them so nodes that reconnect are let in
		// without waiting for the CO to publish again.
		for _, node := range v.AttachedNodes() {
			if _, err := c.target.Publish(ctx, c.transportVolume(v), node); err != nil {
				klog.ErrorS(err, "Re-granting access at start-up failed", "volume", v.ID, "node", node)
			}
		}
	}
	klog.InfoS("Controller ready", "pool", p.Dir(), "capacity", c.capacity, "volumes", len(vols), "transport", c.target.Name())
	return c, nil
}

// Close releases the record store.
func (c *ControllerServer) Close() error { return c.store.Close() }

// Ready fails when the pool filesystem or the record store is unusable; it
// backs Probe so a liveness probe restarts a driver whose pool went away.
func (c *ControllerServer) Ready() error {
	if _, _, err := c.pool.FSSize(); err != nil {
		return fmt.Errorf("pool %s: %w", c.pool.Dir(), err)
	}
	return c.store.Check()
}

// Capacity is the provisioning limit in bytes.
func (c *ControllerServer) Capacity() int64 { return c.capacity }

func (c *ControllerServer) transportVolume(v *store.Volume) transport.Volume {
	return transport.Volume{ID: v.ID, BackingFile: c.pool.Path(v.ID), SizeBytes: v.SizeBytes}
}

// ControllerGetCapabilities implements csi.ControllerServer.
func (c *ControllerServer) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES,
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_MODIFY_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.ControllerServiceCapability_RPC_LIST_VOLUME_HEALTH,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func newID(prefix string) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + hex.EncodeToString(b), nil
}

// supportedFsTypes are the filesystems the node can make; "" lets it choose.
var supportedFsTypes = map[string]bool{"": true, "ext4": true, "ext3": true, "ext2": true, "xfs": true}

// checkCapability validates one capability; field names it for messages.
// Only single-node access modes exist because a loop volume reaches one node.
func checkCapability(field string, vc *csi.VolumeCapability) (store.Capability, error) {
	var out store.Capability
	if vc == nil {
		return out, errorf(codes.InvalidArgument, "%s is required", field)
	}
	switch at := vc.GetAccessType().(type) {
	case *csi.VolumeCapability_Block:
		out.Block = true
	case *csi.VolumeCapability_Mount:
		if !supportedFsTypes[at.Mount.GetFsType()] {
			return out, errorf(codes.InvalidArgument, "%s.mount.fs_type %q is not supported (ext2, ext3, ext4, xfs)", field, at.Mount.GetFsType())
		}
		out.FsType = at.Mount.GetFsType()
	default:
		return out, errorf(codes.InvalidArgument, "%s.access_type is required (block or mount)", field)
	}
	if vc.GetAccessMode() == nil {
		return out, errorf(codes.InvalidArgument, "%s.access_mode is required", field)
	}
	mode := vc.GetAccessMode().GetMode()
	switch mode {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
	case csi.VolumeCapability_AccessMode_UNKNOWN:
		return out, errorf(codes.InvalidArgument, "%s.access_mode.mode is required", field)
	default:
		return out, errorf(codes.InvalidArgument, "%s.access_mode.mode %s is not supported: volumes are reachable from a single node", field, mode)
	}
	out.AccessMode = int32(mode)
	return out, nil
}

func checkCapabilities(field string, vcs []*csi.VolumeCapability) ([]store.Capability, error) {
	if len(vcs) == 0 {
		return nil, errorf(codes.InvalidArgument, "%s is required", field)
	}
	out := make([]store.Capability, 0, len(vcs))
	for i, vc := range vcs {
		c, err := checkCapability(fmt.Sprintf("%s[%d]", field, i), vc)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
