package nvme

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/transport"
)

// DefaultConfigfsRoot is where the nvmet target's configfs tree lives once the
// nvmet module is loaded and configfs is mounted.
const DefaultConfigfsRoot = "/sys/kernel/config/nvmet"

// namespaceID is the only namespace of each volume's subsystem.
const namespaceID = "1"

// BufferedIO chooses nvmet's buffered_io for a namespace.
type BufferedIO string

const (
	// BufferedIOAuto uses direct I/O where the backing file supports O_DIRECT
	// and buffered I/O where it does not (tmpfs), which nvmet would refuse.
	BufferedIOAuto   BufferedIO = "auto"
	BufferedIOAlways BufferedIO = "always"
	BufferedIONever  BufferedIO = "never"
)

// TargetConfig configures the storage-host side.
type TargetConfig struct {
	// ConfigfsRoot is the nvmet configfs directory (DefaultConfigfsRoot if empty).
	ConfigfsRoot string
	// PortID names the nvmet port this target owns (default "1").
	PortID string
	// ListenAddress is the IP address the port listens on (0.0.0.0 or :: for all).
	ListenAddress string
	// AdvertiseAddress is the IP nodes connect to; defaults to ListenAddress,
	// and is required when ListenAddress is a wildcard.
	AdvertiseAddress string
	// Port is the TCP port (DefaultPort if 0).
	Port int
	// TopologyKey and TopologyValue form the zone-style segment of every volume:
	// an NVMe/TCP volume is reachable from any node that reaches the target.
	TopologyKey, TopologyValue string
	// BufferedIO is BufferedIOAuto if empty.
	BufferedIO BufferedIO
	// Model is the controller model string (default "csi-hub").
	Model string
}

// Target exports volumes through the Linux nvmet configfs tree.
type Target struct {
	cfg    TargetConfig
	adrfam string
	cfs    configFS
	// mu serialises configfs changes: the port is shared by all subsystems and is
	// removed when the last one leaves, which must not race with an export.
	mu sync.Mutex
}

var _ transport.Target = (*Target)(nil)

// NewTarget checks cfg and that the nvmet configfs tree is present.
func NewTarget(cfg TargetConfig) (*Target, error) {
	t, err := newTarget(cfg, osFS{})
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(t.cfg.ConfigfsRoot, "subsystems")); err != nil {
		return nil, fmt.Errorf("nvmet configfs tree %s is not there (modprobe nvmet nvmet-tcp; mount -t configfs none /sys/kernel/config): %w", t.cfg.ConfigfsRoot, err)
	}
	return t, nil
}

func newTarget(cfg TargetConfig, cfs configFS) (*Target, error) {
	if cfg.ConfigfsRoot == "" {
		cfg.ConfigfsRoot = DefaultConfigfsRoot
	}
	if cfg.PortID == "" {
		cfg.PortID = "1"
	}
	if _, err := strconv.ParseUint(cfg.PortID, 10, 16); err != nil {
		return nil, fmt.Errorf("nvme port ID %q is not a number 0-65535", cfg.PortID)
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("nvme port %d is not a TCP port", cfg.Port)
	}
	listen := net.ParseIP(cfg.ListenAddress)
	if listen == nil {
		return nil, fmt.Errorf("nvme listen address %q is not an IP address", cfg.ListenAddress)
	}
	if cfg.AdvertiseAddress == "" {
		if listen.IsUnspecified() {
			return nil, fmt.Errorf("nvme listen address %s is a wildcard: set the advertise address nodes connect to", cfg.ListenAddress)
		}
		cfg.AdvertiseAddress = cfg.ListenAddress
	}
	if adv := net.ParseIP(cfg.AdvertiseAddress); adv == nil || adv.IsUnspecified() {
		return nil, fmt.Errorf("nvme advertise address %q is not a routable IP address", cfg.AdvertiseAddress)
	}
	switch cfg.BufferedIO {
	case "":
		cfg.BufferedIO = BufferedIOAuto
	case BufferedIOAuto, BufferedIOAlways, BufferedIONever:
	default:
		return nil, fmt.Errorf("nvme buffered I/O mode %q is not auto, always or never", cfg.BufferedIO)
	}
	if cfg.Model == "" {
		cfg.Model = "csi-hub"
	}
	adrfam := "ipv4"
	if listen.To4() == nil {
		adrfam = "ipv6"
	}
	return &Target{cfg: cfg, adrfam: adrfam, cfs: cfs}, nil
}

// Name implements transport.Target.
func (t *Target) Name() string { return Name }

// AccessibleTopology implements transport.Target.
func (t *Target) AccessibleTopology() map[string]string {
	if t.cfg.TopologyKey == "" {
		return nil
	}
	return map[string]string{t.cfg.TopologyKey: t.cfg.TopologyValue}
}

func (t *Target) subsysDir(nqn string) string {
	return filepath.Join(t.cfg.ConfigfsRoot, "subsystems", nqn)
}
func (t *Target) portDir() string { return filepath.Join(t.cfg.ConfigfsRoot, "ports", t.cfg.PortID) }
func (t *Target) hostDir(hostNQN string) string {
	return filepath.Join(t.cfg.ConfigfsRoot, "hosts", hostNQN)
}

// Export implements transport.Target: subsystem (serial, model, no host
// allowed yet), namespace 1 over the backing file, linked to the TCP port.
func (t *Target) Export(ctx context.Context, vol transport.Volume) error {
	if err := ValidateVolumeID(vol.ID); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.export(vol)
}

func (t *Target) export(vol transport.Volume) error {
	if !filepath.IsAbs(vol.BackingFile) {
		return status.Errorf(codes.InvalidArgument, "nvme export of %s: backing file %q is not an absolute path", vol.ID, vol.BackingFile)
	}
	if _, err := os.Stat(vol.BackingFile); err != nil {
		return status.Errorf(codes.FailedPrecondition, "nvme export of %s: backing file: %v", vol.ID, err)
	}
	nqn := SubsystemNQN(vol.ID)
	sub := t.subsysDir(nqn)
	fail := func(step string, err error) error {
		return status.Errorf(codes.Internal, "nvme export of %s (subsystem %s): %s: %v", vol.ID, nqn, step, err)
	}
	if err := ensureDir(t.cfs, sub); err != nil {
		return fail("create subsystem", err)
	}
	if err := setAttr(t.cfs, filepath.Join(sub, "attr_allow_any_host"), "0"); err != nil {
		return fail("restrict to allowed hosts", err)
	}
	if err := setAttr(t.cfs, filepath.Join(sub, "attr_serial"), Serial(vol.ID)); err != nil {
		return fail("set serial", err)
	}
	if err := setAttr(t.cfs, filepath.Join(sub, "attr_model"), t.cfg.Model); err != nil {
		return fail("set model", err)
	}
	if err := t.ensureNamespace(sub, vol); err != nil {
		return fail("namespace "+namespaceID, err)
	}
	if err := t.ensurePort(); err != nil {
		return fail("port "+t.cfg.PortID, err)
	}
	link := filepath.Join(t.portDir(), "subsystems", nqn)
	if !exists(t.cfs, link) {
		// configfs resolves the target from the caller's cwd: it must be absolute.
		if err := t.cfs.Symlink(sub, link); err != nil && !errors.Is(err, os.ErrExist) {
			return fail(fmt.Sprintf("link to port (listen %s:%d)", t.cfg.ListenAddress, t.cfg.Port), err)
		}
	}
	klog.V(4).InfoS("nvme volume exported", "volumeID", vol.ID, "nqn", nqn)
	return nil
}

func (t *Target) ensureNamespace(sub string, vol transport.Volume) error {
	ns := filepath.Join(sub, "namespaces", namespaceID)
	if err := ensureDir(t.cfs, ns); err != nil {
		return err
	}
	uuid := NamespaceUUID(vol.ID)
	enabled, _ := readAttr(t.cfs, filepath.Join(ns, "enable"))
	if enabled == "1" {
		path, _ := readAttr(t.cfs, filepath.Join(ns, "device_path"))
		cur, _ := readAttr(t.cfs, filepath.Join(ns, "device_uuid"))
		if path == vol.BackingFile && cur == uuid {
			return nil
		}
		// device_path and device_uuid can only change while disabled.
		if err := t.cfs.WriteFile(filepath.Join(ns, "enable"), "0"); err != nil {
			return fmt.Errorf("disable to reconfigure: %w", err)
		}
	}
	buffered := "0"
	if t.wantBufferedIO(vol.BackingFile) {
		buffered = "1"
	}
	if err := setAttr(t.cfs, filepath.Join(ns, "device_path"), vol.BackingFile); err != nil {
		return fmt.Errorf("device_path %s: %w", vol.BackingFile, err)
	}
	if err := setAttr(t.cfs, filepath.Join(ns, "device_uuid"), uuid); err != nil {
		return fmt.Errorf("device_uuid: %w", err)
	}
	if err := setAttr(t.cfs, filepath.Join(ns, "buffered_io"), buffered); err != nil {
		return fmt.Errorf("buffered_io: %w", err)
	}
	if err := t.cfs.WriteFile(filepath.Join(ns, "enable"), "1"); err != nil {
		return fmt.Errorf("enable over %s (buffered_io=%s): %w", vol.BackingFile, buffered, err)
	}
	return nil
}

// wantBufferedIO says whether nvmet must use the page cache for path: its
// default O_DIRECT open fails on filesystems without direct I/O (tmpfs).
func (t *Target) wantBufferedIO(path string) bool {
	switch t.cfg.BufferedIO {
	case BufferedIOAlways:
		return true
	case BufferedIONever:
		return false
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return errors.Is(err, unix.EINVAL)
	}
	unix.Close(fd)
	return false
}

// ensurePort creates the TCP port, or checks that the existing one listens
// where this target was told to.
func (t *Target) ensurePort() error {
	port := t.portDir()
	if err := ensureDir(t.cfs, port); err != nil {
		return err
	}
	want := [][2]string{
		{"addr_trtype", "tcp"},
		{"addr_adrfam", t.adrfam},
		{"addr_traddr", t.cfg.ListenAddress},
		{"addr_trsvcid", strconv.Itoa(t.cfg.Port)},
	}
	same := true
	for _, kv := range want {
		if cur, _ := readAttr(t.cfs, filepath.Join(port, kv[0])); cur != kv[1] {
			same = false
		}
	}
	if same {
		return nil
	}
	// The kernel refuses address changes on an enabled port (one with links).
	if links, _ := listDir(t.cfs, filepath.Join(port, "subsystems")); len(links) > 0 {
		traddr, _ := readAttr(t.cfs, filepath.Join(port, "addr_traddr"))
		svcid, _ := readAttr(t.cfs, filepath.Join(port, "addr_trsvcid"))
		return fmt.Errorf("port is in use listening on %s:%s, not the configured %s:%d; change the port ID or the address", traddr, svcid, t.cfg.ListenAddress, t.cfg.Port)
	}
	for _, kv := range want {
		if err := setAttr(t.cfs, filepath.Join(port, kv[0]), kv[1]); err != nil {
			return fmt.Errorf("%s=%s: %w", kv[0], kv[1], err)
		}
	}
	return nil
}

// Unexport implements transport.Target. Order matters to the kernel: unlink
// from every port, disable and remove the namespace, drop allowed hosts, then
// the subsystem; finally the port and host entries nothing uses any more.
func (t *Target) Unexport(ctx context.Context, vol transport.Volume) error {
	if err := ValidateVolumeID(vol.ID); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	nqn := SubsystemNQN(vol.ID)
	sub := t.subsysDir(nqn)
	fail := func(step string, err error) error {
		return status.Errorf(codes.Internal, "nvme unexport of %s (subsystem %s): %s: %v", vol.ID, nqn, step, err)
	}
	ports, err := listDir(t.cfs, filepath.Join(t.cfg.ConfigfsRoot, "ports"))
	if err != nil {
		return fail("list ports", err)
	}
	for _, p := range ports {
		if err := removeLink(t.cfs, filepath.Join(t.cfg.ConfigfsRoot, "ports", p, "subsystems", nqn)); err != nil {
			return fail("unlink from port "+p, err)
		}
	}
	namespaces, err := listDir(t.cfs, filepath.Join(sub, "namespaces"))
	if err != nil {
		return fail("list namespaces", err)
	}
	for _, n := range namespaces {
		ns := filepath.Join(sub, "namespaces", n)
		if err := setAttr(t.cfs, filepath.Join(ns, "enable"), "0"); err != nil {
			return fail("disable namespace "+n, err)
		}
		if err := removeDir(t.cfs, ns); err != nil {
			return fail("remove namespace "+n, err)
		}
	}
	hosts, err := listDir(t.cfs, filepath.Join(sub, "allowed_hosts"))
	if err != nil {
		return fail("list allowed hosts", err)
	}
	for _, h := range hosts {
		if err := removeLink(t.cfs, filepath.Join(sub, "allowed_hosts", h)); err != nil {
			return fail("revoke host "+h, err)
		}
	}
	if err := removeDir(t.cfs, sub); err != nil {
		return fail("remove subsystem", err)
	}
	for _, h := range hosts {
		t.removeHostIfUnused(h)
	}
	t.removePortIfUnused()
	klog.V(4).InfoS("nvme volume unexported", "volumeID", vol.ID, "nqn", nqn)
	return nil
}

// removePortIfUnused removes this target's port once no subsystem is linked,
// so an idle storage host neither listens nor leaves configfs entries behind.
func (t *Target) removePortIfUnused() {
	port := t.portDir()
	links, err := listDir(t.cfs, filepath.Join(port, "subsystems"))
	if err != nil || len(links) > 0 || !exists(t.cfs, port) {
		return
	}
	if err := removeDir(t.cfs, port); err != nil {
		klog.InfoS("nvme port left in place", "port", t.cfg.PortID, "err", err)
	}
}

// removeHostIfUnused removes hosts/<hostNQN> when no subsystem allows it.
func (t *Target) removeHostIfUnused(hostNQN string) {
	subs, err := listDir(t.cfs, filepath.Join(t.cfg.ConfigfsRoot, "subsystems"))
	if err != nil {
		return
	}
	for _, s := range subs {
		if exists(t.cfs, filepath.Join(t.cfg.ConfigfsRoot, "subsystems", s, "allowed_hosts", hostNQN)) {
			return
		}
	}
	if err := removeDir(t.cfs, t.hostDir(hostNQN)); err != nil {
		klog.InfoS("nvme host entry left in place", "hostNQN", hostNQN, "err", err)
	}
}

// Publish implements transport.Target: nodeID is the node's host NQN.
func (t *Target) Publish(ctx context.Context, vol transport.Volume, nodeID string) (map[string]string, error) {
	if err := ValidateVolumeID(vol.ID); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := ValidateHostNQN(nodeID); err != nil {
		// CSI answers NotFound for an unknown node; no node of this transport
		// can have an ID that is not an NQN.
		return nil, status.Errorf(codes.NotFound, "node_id %q not found: nvme nodes are identified by their host NQN (%v)", nodeID, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Re-export first: a publish after a target reboot must not find an empty tree.
	if err := t.export(vol); err != nil {
		return nil, err
	}
	nqn := SubsystemNQN(vol.ID)
	host := t.hostDir(nodeID)
	if err := ensureDir(t.cfs, host); err != nil {
		return nil, status.Errorf(codes.Internal, "nvme publish of %s to %s: create host entry: %v", vol.ID, nodeID, err)
	}
	link := filepath.Join(t.subsysDir(nqn), "allowed_hosts", nodeID)
	if !exists(t.cfs, link) {
		if err := t.cfs.Symlink(host, link); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, status.Errorf(codes.Internal, "nvme publish of %s to %s: allow host: %v", vol.ID, nodeID, err)
		}
	}
	klog.V(4).InfoS("nvme volume published", "volumeID", vol.ID, "hostNQN", nodeID)
	return map[string]string{
		transport.KeyTransport: Name,
		transport.KeyVolumeID:  vol.ID,
		KeyTraddr:              t.cfg.AdvertiseAddress,
		KeyTrsvcid:             strconv.Itoa(t.cfg.Port),
		KeyNQN:                 nqn,
		KeySerial:              Serial(vol.ID),
		KeyUUID:                NamespaceUUID(vol.ID),
	}, nil
}

// Unpublish implements transport.Target. It revokes the host's grant and
// ends the host's live connections to the volume's subsystem: nvmet checks
// allowed_hosts only when a host connects, so a node that never unstaged (a
// force detach of a lost or partitioned node, after which the volume may be
// published elsewhere) would otherwise keep reading and writing. CSI unstages
// (disconnects) on the node first in the normal order, and then there is
// nothing to end. Idempotent.
func (t *Target) Unpublish(ctx context.Context, vol transport.Volume, nodeID string) error {
	if err := ValidateVolumeID(vol.ID); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if ValidateHostNQN(nodeID) != nil {
		return nil // never granted: Publish refuses such node IDs
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	nqn := SubsystemNQN(vol.ID)
	link := filepath.Join(t.subsysDir(nqn), "allowed_hosts", nodeID)
	granted := exists(t.cfs, link)
	if err := removeLink(t.cfs, link); err != nil {
		return status.Errorf(codes.Internal, "nvme unpublish of %s from %s: %v", vol.ID, nodeID, err)
	}
	t.removeHostIfUnused(nodeID)
	// Kick the connections off, unless this host had no grant and others still
	// have one (a stale unpublish must not interrupt the node using the
	// volume). A retry after a failed kick finds no grant but, with the
	// volume's single attachment gone, no other host either: it kicks again.
	others, err := listDir(t.cfs, filepath.Join(t.subsysDir(nqn), "allowed_hosts"))
	if err != nil {
		return status.Errorf(codes.Internal, "nvme unpublish of %s from %s: list allowed hosts: %v", vol.ID, nodeID, err)
	}
	if granted || len(others) == 0 {
		if err := t.dropConnections(nqn); err != nil {
			return status.Errorf(codes.Internal, "nvme unpublish of %s from %s: end the host's connections: %v", vol.ID, nodeID, err)
		}
	}
	return nil
}

// dropConnections ends every host connection to subsystem nqn: unlinking a
// subsystem from a port makes the kernel delete that port's controllers of
// it (nvmet_port_del_ctrls); linking it again listens for hosts that are
// still allowed, which reconnect by themselves. Hosts no longer allowed are
// refused when they try.
func (t *Target) dropConnections(nqn string) error {
	ports, err := listDir(t.cfs, filepath.Join(t.cfg.ConfigfsRoot, "ports"))
	if err != nil {
		return err
	}
	for _, p := range ports {
		link := filepath.Join(t.cfg.ConfigfsRoot, "ports", p, "subsystems", nqn)
		if !exists(t.cfs, link) {
			continue
		}
		if err := removeLink(t.cfs, link); err != nil {
			return fmt.Errorf("unlink from port %s: %w", p, err)
		}
		if err := t.cfs.Symlink(t.subsysDir(nqn), link); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link to port %s again: %w", p, err)
		}
	}
	return nil
}

// Resized implements transport.Target: the kernel re-reads the backing file's
// size and tells connected hosts through a namespace-changed event.
func (t *Target) Resized(ctx context.Context, vol transport.Volume) error {
	if err := ValidateVolumeID(vol.ID); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.export(vol); err != nil {
		return err
	}
	attr := filepath.Join(t.subsysDir(SubsystemNQN(vol.ID)), "namespaces", namespaceID, "revalidate_size")
	if err := t.cfs.WriteFile(attr, "1"); err != nil {
		return status.Errorf(codes.Internal, "nvme resize of %s: revalidate namespace size: %v", vol.ID, err)
	}
	return nil
}
