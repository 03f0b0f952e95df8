package nvme

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/csi-hub/csi-hub/plugin/transport"
)

// Executor runs a command and returns its combined output; unit tests fake it.
type Executor interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

type osExecutor struct{}

func (osExecutor) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// InitiatorConfig configures the node side.
type InitiatorConfig struct {
	// HostNQN identifies this node to targets (see HostNQN). Required.
	HostNQN string
	// SysfsRoot is "/sys" unless testing.
	SysfsRoot string
	// DevRoot is "/dev" unless testing.
	DevRoot string
	// NVMeCLI is the nvme-cli binary ("nvme" from PATH if empty).
	NVMeCLI string
	// AttachTimeout bounds each wait on the kernel: Attach for the device,
	// Detach for the controllers to go, Rescan for the new size (default 30s).
	AttachTimeout time.Duration
	// CtrlLossTimeout is nvme connect's ctrl_loss_tmo in seconds (0: the kernel
	// default, 600): how long I/O waits for a lost target before failing.
	CtrlLossTimeout int
	// ReconnectDelay is nvme connect's reconnect_delay in seconds (0: the
	// kernel default, 10): the pause between attempts to reach a lost target.
	ReconnectDelay int
	// PollInterval between sysfs checks (default 100ms).
	PollInterval time.Duration
	// Exec runs nvme-cli (the real one if nil).
	Exec Executor
}

// Initiator attaches NVMe/TCP volumes with nvme-cli and finds them in sysfs.
type Initiator struct {
	cfg InitiatorConfig
	sys sysfs
}

var _ transport.Initiator = (*Initiator)(nil)

// NewInitiator checks cfg and fills in defaults.
func NewInitiator(cfg InitiatorConfig) (*Initiator, error) {
	if err := ValidateHostNQN(cfg.HostNQN); err != nil {
		return nil, err
	}
	if cfg.SysfsRoot == "" {
		cfg.SysfsRoot = "/sys"
	}
	if cfg.DevRoot == "" {
		cfg.DevRoot = "/dev"
	}
	if cfg.NVMeCLI == "" {
		cfg.NVMeCLI = "nvme"
	}
	if cfg.AttachTimeout == 0 {
		cfg.AttachTimeout = 30 * time.Second
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.Exec == nil {
		cfg.Exec = osExecutor{}
	}
	return &Initiator{cfg: cfg, sys: sysfs{root: cfg.SysfsRoot}}, nil
}

// Name implements transport.Initiator.
func (i *Initiator) Name() string { return Name }

// HostNQN is the NQN this initiator connects as (its node ID).
func (i *Initiator) HostNQN() string { return i.cfg.HostNQN }

// expected is what the publish context promises about a volume's device.
type expected struct {
	volumeID, traddr, trsvcid, nqn, serial, uuid string
}

func (e expected) String() string {
	s := fmt.Sprintf("subsystem %s with serial %q", e.nqn, e.serial)
	if e.uuid != "" {
		s += fmt.Sprintf(" and namespace UUID %s", e.uuid)
	}
	return s
}

// parseContext validates a publish context against the volume it claims to be.
func parseContext(volumeID string, pc map[string]string, needAddress bool) (expected, error) {
	if err := ValidateVolumeID(volumeID); err != nil {
		return expected{}, status.Error(codes.InvalidArgument, err.Error())
	}
	e := expected{volumeID: volumeID, nqn: SubsystemNQN(volumeID), serial: Serial(volumeID)}
	if pc == nil {
		pc = map[string]string{}
	}
	if tr, ok := pc[transport.KeyTransport]; ok && tr != Name {
		return e, status.Errorf(codes.InvalidArgument, "publish context %s is %q, this node attaches %q volumes", transport.KeyTransport, tr, Name)
	}
	if id, ok := pc[transport.KeyVolumeID]; ok && id != volumeID {
		return e, status.Errorf(codes.InvalidArgument, "publish context %s is %q, not volume %q", transport.KeyVolumeID, id, volumeID)
	}
	if nqn, ok := pc[KeyNQN]; ok && nqn != e.nqn {
		return e, status.Errorf(codes.InvalidArgument, "publish context %s is %q, volume %s is exported as %q", KeyNQN, nqn, volumeID, e.nqn)
	}
	if serial, ok := pc[KeySerial]; ok && serial != e.serial {
		return e, status.Errorf(codes.InvalidArgument, "publish context %s is %q, volume %s is exported with serial %q", KeySerial, serial, volumeID, e.serial)
	}
	e.uuid = pc[KeyUUID]
	if !needAddress {
		return e, nil
	}
	e.traddr, e.trsvcid = pc[KeyTraddr], pc[KeyTrsvcid]
	if e.traddr == "" {
		return e, status.Errorf(codes.InvalidArgument, "publish context has no %s (target address of volume %s)", KeyTraddr, volumeID)
	}
	if e.trsvcid == "" {
		e.trsvcid = strconv.Itoa(DefaultPort)
	}
	if p, err := strconv.Atoi(e.trsvcid); err != nil || p < 1 || p > 65535 {
		return e, status.Errorf(codes.InvalidArgument, "publish context %s %q is not a TCP port", KeyTrsvcid, e.trsvcid)
	}
	return e, nil
}

// verify checks that sub really is the expected volume and returns its device
// path, or "" while its namespace has not appeared yet.
func (i *Initiator) verify(sub *nvmeSubsystem, e expected) (string, error) {
	if sub.serial != e.serial {
		return "", status.Errorf(codes.FailedPrecondition, "NVMe subsystem %s reports serial %q, which is not volume %s's; expected %s: refusing the device", sub.nqn, sub.serial, e.volumeID, e)
	}
	if len(sub.namespaces) == 0 {
		return "", nil
	}
	dev := sub.namespaces[0]
	if len(sub.namespaces) > 1 {
		return "", status.Errorf(codes.FailedPrecondition, "NVMe subsystem %s has %d namespaces %v, expected one for volume %s", sub.nqn, len(sub.namespaces), sub.namespaces, e.volumeID)
	}
	if e.uuid != "" {
		if got := i.sys.namespaceUUID(dev); got != "" && got != e.uuid {
			return "", status.Errorf(codes.FailedPrecondition, "NVMe device %s reports namespace UUID %s, expected %s: refusing the device", dev, got, e)
		}
	}
	path := filepath.Join(i.cfg.DevRoot, dev)
	if _, err := os.Stat(path); err != nil {
		return "", nil // sysfs is ahead of devtmpfs for a moment
	}
	return path, nil
}

// Attach implements transport.Initiator: connect, then wait for the namespace
// of the right subsystem and serial. On failure it disconnects what it
// connected, so nothing stays half-attached.
func (i *Initiator) Attach(ctx context.Context, volumeID string, pc map[string]string) (string, error) {
	e, err := parseContext(volumeID, pc, true)
	if err != nil {
		return "", err
	}
	sub, err := i.sys.byNQN(e.nqn)
	if err != nil {
		return "", status.Errorf(codes.Internal, "read NVMe subsystems: %v", err)
	}
	if sub != nil {
		// Already connected (a retried stage): refuse a wrong device, reuse a right one.
		if dev, err := i.verify(sub, e); err != nil || dev != "" {
			return dev, err
		}
	}
	args := []string{"connect", "-t", "tcp", "-a", e.traddr, "-s", e.trsvcid, "-n", e.nqn, "--hostnqn", i.cfg.HostNQN}
	if id := hostIDFromNQN(i.cfg.HostNQN); id != "" {
		args = append(args, "--hostid", id)
	}
	if i.cfg.CtrlLossTimeout > 0 {
		args = append(args, "-l", strconv.Itoa(i.cfg.CtrlLossTimeout))
	}
	if i.cfg.ReconnectDelay > 0 {
		args = append(args, "-c", strconv.Itoa(i.cfg.ReconnectDelay))
	}
	out, err := i.cfg.Exec.Run(ctx, i.cfg.NVMeCLI, args...)
	if err != nil && !alreadyConnected(out) {
		i.cleanup(e)
		return "", status.Errorf(codes.Unavailable, "nvme connect to %s at %s:%s as host %s failed (is the target reachable and the host allowed by ControllerPublishVolume?): %v: %s",
			e.nqn, e.traddr, e.trsvcid, i.cfg.HostNQN, err, strings.TrimSpace(string(out)))
	}
	dev, err := i.waitForDevice(ctx, e)
	if err != nil {
		i.cleanup(e)
		return "", err
	}
	klog.V(2).InfoS("nvme volume attached", "volumeID", volumeID, "device", dev, "nqn", e.nqn)
	return dev, nil
}

func alreadyConnected(out []byte) bool {
	s := strings.ToLower(string(out))
	return strings.Contains(s, "already connected") || strings.Contains(s, "operation already in progress")
}

func (i *Initiator) waitForDevice(ctx context.Context, e expected) (string, error) {
	deadline := time.Now().Add(i.cfg.AttachTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for {
		sub, err := i.sys.byNQN(e.nqn)
		if err != nil {
			return "", status.Errorf(codes.Internal, "read NVMe subsystems: %v", err)
		}
		if sub != nil {
			dev, err := i.verify(sub, e)
			if err != nil || dev != "" {
				return dev, err
			}
		}
		if time.Now().After(deadline) {
			what := "no NVMe subsystem with that NQN"
			if sub != nil {
				what = fmt.Sprintf("subsystem %s has no namespace block device", filepath.Base(sub.dir))
			}
			return "", status.Errorf(codes.DeadlineExceeded, "nvme connect to %s:%s succeeded but the device of %s did not appear within %v: %s",
				e.traddr, e.trsvcid, e, i.cfg.AttachTimeout, what)
		}
		select {
		case <-ctx.Done():
			return "", status.Errorf(codes.DeadlineExceeded, "waiting for the device of %s: %v", e, ctx.Err())
		case <-time.After(i.cfg.PollInterval):
		}
	}
}

// cleanup disconnects after a failed attach, with its own short deadline
// because the caller's context may be what expired.
func (i *Initiator) cleanup(e expected) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := i.disconnect(ctx, e); err != nil {
		klog.ErrorS(err, "nvme disconnect after failed attach", "nqn", e.nqn)
	}
}

// disconnect removes every controller of the subsystem, and only of it.
func (i *Initiator) disconnect(ctx context.Context, e expected) error {
	sub, err := i.sys.byNQN(e.nqn)
	if err != nil {
		return status.Errorf(codes.Internal, "read NVMe subsystems: %v", err)
	}
	if sub == nil || len(sub.controllers) == 0 {
		return nil
	}
	out, err := i.cfg.Exec.Run(ctx, i.cfg.NVMeCLI, "disconnect", "-n", e.nqn)
	if err != nil {
		return status.Errorf(codes.Internal, "nvme disconnect -n %s: %v: %s", e.nqn, err, strings.TrimSpace(string(out)))
	}
	// The subsystem's controllers go away synchronously; make sure they did.
	for deadline := time.Now().Add(i.cfg.AttachTimeout); ; {
		sub, err := i.sys.byNQN(e.nqn)
		if err == nil && (sub == nil || len(sub.controllers) == 0) {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return status.Errorf(codes.Internal, "nvme disconnect -n %s: read NVMe subsystems: %v", e.nqn, err)
			}
			return status.Errorf(codes.Internal, "nvme disconnect -n %s returned but controllers %v remain", e.nqn, sub.controllers)
		}
		time.Sleep(i.cfg.PollInterval)
	}
}

// Detach implements transport.Initiator.
func (i *Initiator) Detach(ctx context.Context, volumeID string, pc map[string]string) error {
	e, err := parseContext(volumeID, pc, false)
	if err != nil {
		return err
	}
	if err := i.disconnect(ctx, e); err != nil {
		return err
	}
	klog.V(2).InfoS("nvme volume detached", "volumeID", volumeID, "nqn", e.nqn)
	return nil
}

// Device implements transport.Initiator.
func (i *Initiator) Device(ctx context.Context, volumeID string, pc map[string]string) (string, error) {
	e, err := parseContext(volumeID, pc, false)
	if err != nil {
		return "", err
	}
	sub, err := i.sys.byNQN(e.nqn)
	if err != nil {
		return "", status.Errorf(codes.Internal, "read NVMe subsystems: %v", err)
	}
	if sub == nil {
		return "", nil
	}
	return i.verify(sub, e)
}

// Rescan implements transport.Initiator: ask every controller of the volume's
// subsystem to rescan, then wait until the block device has the size the
// namespace now reports.
func (i *Initiator) Rescan(ctx context.Context, volumeID, devicePath string) error {
	if err := ValidateVolumeID(volumeID); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	dev := filepath.Base(devicePath)
	sub, err := i.sys.byNamespace(dev)
	if err != nil {
		return status.Errorf(codes.Internal, "read NVMe subsystems: %v", err)
	}
	want := SubsystemNQN(volumeID)
	if sub == nil {
		return status.Errorf(codes.NotFound, "%s is not an attached NVMe namespace (expected subsystem %s)", devicePath, want)
	}
	if sub.nqn != want {
		return status.Errorf(codes.FailedPrecondition, "%s belongs to subsystem %s, expected %s: refusing to rescan", devicePath, sub.nqn, want)
	}
	for _, ctrl := range sub.controllers {
		if out, err := i.cfg.Exec.Run(ctx, i.cfg.NVMeCLI, "ns-rescan", filepath.Join(i.cfg.DevRoot, ctrl)); err != nil {
			return status.Errorf(codes.Internal, "nvme ns-rescan %s: %v: %s", ctrl, err, strings.TrimSpace(string(out)))
		}
	}
	wantBytes, err := i.namespaceBytes(ctx, devicePath)
	if err != nil {
		return err
	}
	// The rescan runs in a kernel work item: poll until the block layer caught up.
	deadline := time.Now().Add(i.cfg.AttachTimeout)
	for {
		got, err := i.sys.sizeBytes(dev)
		if err != nil {
			return status.Errorf(codes.Internal, "%v", err)
		}
		if got == wantBytes {
			return nil
		}
		if time.Now().After(deadline) {
			return status.Errorf(codes.DeadlineExceeded, "%s is %d bytes after rescan, the namespace of %s reports %d", devicePath, got, volumeID, wantBytes)
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.DeadlineExceeded, "rescan of %s: %v", devicePath, ctx.Err())
		case <-time.After(i.cfg.PollInterval):
		}
	}
}

// namespaceBytes asks the controller (Identify Namespace) how large the
// namespace is: nsze blocks of 2^ds bytes in the active LBA format.
func (i *Initiator) namespaceBytes(ctx context.Context, devicePath string) (int64, error) {
	out, err := i.cfg.Exec.Run(ctx, i.cfg.NVMeCLI, "id-ns", devicePath, "-o", "json")
	if err != nil {
		return 0, status.Errorf(codes.Internal, "nvme id-ns %s: %v: %s", devicePath, err, strings.TrimSpace(string(out)))
	}
	var idns struct {
		Nsze  uint64 `json:"nsze"`
		Flbas uint8  `json:"flbas"`
		Lbafs []struct {
			Ds uint8 `json:"ds"`
		} `json:"lbafs"`
	}
	if err := json.Unmarshal(out, &idns); err != nil {
		return 0, status.Errorf(codes.Internal, "nvme id-ns %s: unreadable JSON: %v", devicePath, err)
	}
	format := int(idns.Flbas & 0x0f)
	if format >= len(idns.Lbafs) || idns.Lbafs[format].Ds < 9 || idns.Lbafs[format].Ds > 16 {
		return 0, status.Errorf(codes.Internal, "nvme id-ns %s: LBA format %d not described", devicePath, format)
	}
	return int64(idns.Nsze) << idns.Lbafs[format].Ds, nil
}
