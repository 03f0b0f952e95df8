package nvme

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/csi-hub/csi-hub/plugin/transport"
)

// fakeHost is a fake /sys and /dev plus a scripted nvme-cli.
type fakeHost struct {
	t        *testing.T
	sys, dev string

	mu    sync.Mutex
	calls []string
	// onConnect runs on "nvme connect"; it returns the command's output and error.
	onConnect func() ([]byte, error)
	idNsJSON  string
	// disconnectFails makes "nvme disconnect" succeed without disconnecting.
	disconnectFails bool
}

func newFakeHost(t *testing.T) *fakeHost {
	root := t.TempDir()
	h := &fakeHost{t: t, sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev")}
	for _, d := range []string{h.sys, h.dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// write reports failures with Error, not Fatal: connect scripts call it from
// their own goroutines.
func (h *fakeHost) write(path, content string) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		h.t.Error(err)
		return
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		h.t.Error(err)
	}
}

// addSubsystem lays out nvme-subsys<n> the way the kernel does for one TCP
// controller nvme<n> and, if ns is true, its multipath head nvme<n>n1. The
// subsystem directory appears at once with its attributes filled in (it is
// built aside and renamed into place), as sysfs shows a registered device.
func (h *fakeHost) addSubsystem(n int, nqn, serial, uuid string, ns bool) {
	name := fmt.Sprintf("nvme-subsys%d", n)
	staged := filepath.Join(filepath.Dir(h.sys), "staging", name)
	h.write(filepath.Join(staged, "subsysnqn"), nqn+"\n")
	h.write(filepath.Join(staged, "serial"), fmt.Sprintf("%-20s\n", serial)) // space-padded
	h.write(filepath.Join(staged, "model"), "csi-hub\n")
	h.write(filepath.Join(staged, fmt.Sprintf("nvme%d", n), "state"), "live\n")
	h.write(filepath.Join(staged, fmt.Sprintf("ng%dn1", n), "dev"), "242:0\n") // char device: not a candidate
	dev := fmt.Sprintf("nvme%dn1", n)
	if ns {
		h.write(filepath.Join(staged, dev, "size"), "131072\n")
		h.write(filepath.Join(h.sys, "block", dev, "uuid"), uuid+"\n")
		h.write(filepath.Join(h.sys, "block", dev, "size"), "131072\n")
	}
	class := filepath.Join(h.sys, "class", "nvme-subsystem")
	if err := os.MkdirAll(class, 0o755); err != nil {
		h.t.Error(err)
		return
	}
	if err := os.Rename(staged, filepath.Join(class, name)); err != nil {
		h.t.Error(err)
		return
	}
	if ns {
		h.write(filepath.Join(h.dev, dev), "")
	}
}

func (h *fakeHost) removeSubsystem(n int) {
	os.RemoveAll(filepath.Join(h.sys, "class", "nvme-subsystem", fmt.Sprintf("nvme-subsys%d", n)))
	os.RemoveAll(filepath.Join(h.sys, "block", fmt.Sprintf("nvme%dn1", n)))
	os.Remove(filepath.Join(h.dev, fmt.Sprintf("nvme%dn1", n)))
}

func (h *fakeHost) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	h.mu.Lock()
	h.calls = append(h.calls, strings.Join(append([]string{name}, args...), " "))
	h.mu.Unlock()
	switch args[0] {
	case "connect":
		if h.onConnect == nil {
			return nil, errors.New("no connect script")
		}
		return h.onConnect()
	case "disconnect":
		if h.disconnectFails {
			return []byte("Failed to disconnect\n"), nil // exit 0, yet nothing happened
		}
		subs, _ := os.ReadDir(filepath.Join(h.sys, "class", "nvme-subsystem"))
		for i := range subs {
			nqn, _ := os.ReadFile(filepath.Join(h.sys, "class", "nvme-subsystem", subs[i].Name(), "subsysnqn"))
			if strings.TrimSpace(string(nqn)) == args[2] {
				var n int
				fmt.Sscanf(subs[i].Name(), "nvme-subsys%d", &n)
				h.removeSubsystem(n)
			}
		}
		return []byte("NQN:" + args[2] + " disconnected 1 controller(s)\n"), nil
	case "ns-rescan":
		h.write(filepath.Join(h.sys, "block", "nvme0n1", "size"), "262144\n")
		return nil, nil
	case "id-ns":
		return []byte(h.idNsJSON), nil
	}
	return nil, fmt.Errorf("unexpected command %v", args)
}

func (h *fakeHost) called(prefix string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, c := range h.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func newTestInitiator(t *testing.T, h *fakeHost) *Initiator {
	t.Helper()
	i, err := NewInitiator(InitiatorConfig{
		HostNQN: testHost, SysfsRoot: h.sys, DevRoot: h.dev, Exec: h,
		AttachTimeout: 300 * time.Millisecond, PollInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func publishContext(id string) map[string]string {
	return map[string]string{
		transport.KeyTransport: "nvme", transport.KeyVolumeID: id,
		KeyTraddr: "192.0.2.10", KeyTrsvcid: "4420", KeyNQN: SubsystemNQN(id),
		KeySerial: Serial(id), KeyUUID: NamespaceUUID(id),
	}
}

const volID = "vol-00112233445566aa"

func TestAttachConnectsAndFindsTheHeadDevice(t *testing.T) {
	h := newFakeHost(t)
	h.addSubsystem(0, SubsystemNQN("vol-other"), "vol-other", NamespaceUUID("vol-other"), true)
	h.onConnect = func() ([]byte, error) {
		// The device shows up a little after connect returns, as in the kernel.
		go func() {
			time.Sleep(30 * time.Millisecond)
			h.addSubsystem(1, SubsystemNQN(volID), volID, NamespaceUUID(volID), true)
		}()
		return nil, nil
	}
	i := newTestInitiator(t, h)
	i.cfg.CtrlLossTimeout, i.cfg.ReconnectDelay = 60, 2
	dev, err := i.Attach(context.Background(), volID, publishContext(volID))
	if err != nil {
		t.Fatal(err)
	}
	if dev != filepath.Join(h.dev, "nvme1n1") {
		t.Errorf("device %q, want nvme1n1 (nvme0n1 is another volume)", dev)
	}
	connects := h.called("nvme connect")
	want := "nvme connect -t tcp -a 192.0.2.10 -s 4420 -n " + SubsystemNQN(volID) + " --hostnqn " + testHost + " --hostid 3f2a6c1e-1111-4222-8333-444455556666 -l 60 -c 2"
	if len(connects) != 1 || connects[0] != want {
		t.Errorf("connect calls %q, want [%q]", connects, want)
	}
	if got, err := i.Device(context.Background(), volID, publishContext(volID)); err != nil || got != dev {
		t.Errorf("Device = %q, %v", got, err)
	}
	// Idempotent: attached already, no second connect.
	if again, err := i.Attach(context.Background(), volID, publishContext(volID)); err != nil || again != dev {
		t.Errorf("second attach = %q, %v", again, err)
	}
	if n := len(h.called("nvme connect")); n != 1 {
		t.Errorf("second attach connected again (%d connects)", n)
	}
}

func TestAttachTreatsAlreadyConnectedAsSuccess(t *testing.T) {
	h := newFakeHost(t)
	h.onConnect = func() ([]byte, error) {
		h.addSubsystem(0, SubsystemNQN(volID), volID, NamespaceUUID(volID), true)
		return []byte("already connected\n"), errors.New("exit status 1")
	}
	if _, err := newTestInitiator(t, h).Attach(context.Background(), volID, publishContext(volID)); err != nil {
		t.Fatal(err)
	}
}

func TestAttachTargetUnreachable(t *testing.T) {
	h := newFakeHost(t)
	h.onConnect = func() ([]byte, error) {
		return []byte("Failed to write to /dev/nvme-fabrics: Connection refused\n"), errors.New("exit status 1")
	}
	_, err := newTestInitiator(t, h).Attach(context.Background(), volID, publishContext(volID))
	wantCode(t, err, codes.Unavailable, "192.0.2.10:4420", SubsystemNQN(volID), testHost, "Connection refused")
}

func TestAttachDeviceNeverAppearsDisconnects(t *testing.T) {
	h := newFakeHost(t)
	h.onConnect = func() ([]byte, error) {
		h.addSubsystem(0, SubsystemNQN(volID), volID, "", false) // controller, no namespace
		return nil, nil
	}
	_, err := newTestInitiator(t, h).Attach(context.Background(), volID, publishContext(volID))
	wantCode(t, err, codes.DeadlineExceeded, SubsystemNQN(volID), `serial "`+volID+`"`, "no namespace block device")
	if d := h.called("nvme disconnect"); len(d) != 1 || d[0] != "nvme disconnect -n "+SubsystemNQN(volID) {
		t.Errorf("disconnect calls %q, want exactly this subsystem", d)
	}
	if _, err := os.Stat(filepath.Join(h.sys, "class", "nvme-subsystem", "nvme-subsys0")); !os.IsNotExist(err) {
		t.Error("half-connected subsystem left behind")
	}
}

func TestAttachRefusesWrongSerialAndDisconnects(t *testing.T) {
	h := newFakeHost(t)
	h.onConnect = func() ([]byte, error) {
		h.addSubsystem(0, SubsystemNQN(volID), "vol-ffffffffffffffff", NamespaceUUID(volID), true)
		return nil, nil
	}
	_, err := newTestInitiator(t, h).Attach(context.Background(), volID, publishContext(volID))
	wantCode(t, err, codes.FailedPrecondition, `"vol-ffffffffffffffff"`, `serial "`+volID+`"`, "refusing")
	if len(h.called("nvme disconnect")) != 1 {
		t.Error("wrong device not disconnected")
	}
}

func TestAttachRefusesWrongNamespaceUUID(t *testing.T) {
	h := newFakeHost(t)
	h.onConnect = func() ([]byte, error) {
		h.addSubsystem(0, SubsystemNQN(volID), volID, NamespaceUUID("vol-x"), true)
		return nil, nil
	}
	_, err := newTestInitiator(t, h).Attach(context.Background(), volID, publishContext(volID))
	wantCode(t, err, codes.FailedPrecondition, NamespaceUUID("vol-x"), NamespaceUUID(volID))
}

func TestAttachRejectsPublishContextOfAnotherVolume(t *testing.T) {
	h := newFakeHost(t)
	i := newTestInitiator(t, h)
	for key, value := range map[string]string{
		KeyNQN: SubsystemNQN("vol-other"), KeySerial: "vol-other", transport.KeyVolumeID: "vol-other",
		transport.KeyTransport: "loop", KeyTraddr: "", KeyTrsvcid: "http",
	} {
		pc := publishContext(volID)
		pc[key] = value
		_, err := i.Attach(context.Background(), volID, pc)
		wantCode(t, err, codes.InvalidArgument, key)
	}
	if len(h.calls) != 0 {
		t.Errorf("ran %v on a bad publish context", h.calls)
	}
}

func TestDetachDisconnectsOnlyThatSubsystem(t *testing.T) {
	h := newFakeHost(t)
	h.addSubsystem(0, SubsystemNQN("vol-other"), "vol-other", "", true)
	h.addSubsystem(1, SubsystemNQN(volID), volID, NamespaceUUID(volID), true)
	i := newTestInitiator(t, h)
	if err := i.Detach(context.Background(), volID, publishContext(volID)); err != nil {
		t.Fatal(err)
	}
	if d := h.called("nvme disconnect"); !slices.Equal(d, []string{"nvme disconnect -n " + SubsystemNQN(volID)}) {
		t.Errorf("disconnect calls %q", d)
	}
	if _, err := os.Stat(filepath.Join(h.sys, "class", "nvme-subsystem", "nvme-subsys0")); err != nil {
		t.Error("another volume's subsystem was disconnected")
	}
	// Idempotent, also with no publish context (unstage after a node restart).
	if err := i.Detach(context.Background(), volID, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(h.called("nvme disconnect")); n != 1 {
		t.Errorf("detach of a detached volume ran disconnect (%d calls)", n)
	}
	if dev, err := i.Device(context.Background(), volID, nil); err != nil || dev != "" {
		t.Errorf("Device after detach = %q, %v", dev, err)
	}
}

func TestRescanWaitsForTheNewSize(t *testing.T) {
	h := newFakeHost(t)
	h.addSubsystem(0, SubsystemNQN(volID), volID, NamespaceUUID(volID), true)
	// 262144 blocks of 2^9 bytes = 128 MiB, what the fake ns-rescan sets.
	h.idNsJSON = `{"nsze":262144,"ncap":262144,"flbas":0,"lbafs":[{"ms":0,"ds":9,"rp":0}]}`
	i := newTestInitiator(t, h)
	dev := filepath.Join(h.dev, "nvme0n1")
	if err := i.Rescan(context.Background(), volID, dev); err != nil {
		t.Fatal(err)
	}
	if r := h.called("nvme ns-rescan"); len(r) != 1 || r[0] != "nvme ns-rescan "+filepath.Join(h.dev, "nvme0") {
		t.Errorf("ns-rescan calls %q", r)
	}
	// A namespace claiming more than the device ever reaches times out clearly.
	h.idNsJSON = `{"nsze":524288,"flbas":0,"lbafs":[{"ds":9}]}`
	err := i.Rescan(context.Background(), volID, dev)
	wantCode(t, err, codes.DeadlineExceeded, "134217728", "268435456")
	// A device of another volume is refused.
	err = i.Rescan(context.Background(), "vol-other", dev)
	wantCode(t, err, codes.FailedPrecondition, SubsystemNQN("vol-other"))
}

func TestSysfsIgnoresPerPathAndCharDevices(t *testing.T) {
	h := newFakeHost(t)
	h.addSubsystem(0, SubsystemNQN(volID), volID, "", true)
	h.write(filepath.Join(h.sys, "class", "nvme-subsystem", "nvme-subsys0", "nvme0c0n1", "size"), "1\n")
	sub, err := sysfs{root: h.sys}.byNQN(SubsystemNQN(volID))
	if err != nil || sub == nil {
		t.Fatal(sub, err)
	}
	if !slices.Equal(sub.namespaces, []string{"nvme0n1"}) || !slices.Equal(sub.controllers, []string{"nvme0"}) || sub.serial != volID {
		t.Errorf("parsed %+v", sub)
	}
}

func TestHostNQNFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "etc", "nvme", "hostnqn")
	dmi := filepath.Join(dir, "product_uuid")
	os.WriteFile(dmi, []byte("3F2A6C1E-1111-4222-8333-444455556666\n"), 0o644)
	nqn, err := LoadOrCreateHostNQN(file, dmi)
	if err != nil || nqn != testHost {
		t.Fatalf("generated %q, %v; want %q from the DMI UUID", nqn, err, testHost)
	}
	if b, _ := os.ReadFile(file); strings.TrimSpace(string(b)) != testHost {
		t.Errorf("file holds %q", b)
	}
	os.WriteFile(dmi, []byte("ffffffff-0000-4000-8000-000000000000\n"), 0o644)
	if again, _ := LoadOrCreateHostNQN(file, dmi); again != testHost {
		t.Errorf("existing file not reused: %q", again)
	}
	random, err := LoadOrCreateHostNQN(filepath.Join(dir, "other"), filepath.Join(dir, "missing"))
	if err != nil || !strings.HasPrefix(random, uuidNQNPrefix) || hostIDFromNQN(random) == "" {
		t.Errorf("random host NQN %q, %v", random, err)
	}
	os.WriteFile(file, []byte("not-an-nqn\n"), 0o644)
	if _, err := LoadOrCreateHostNQN(file, dmi); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("bad host NQN file accepted: %v", err)
	}
	if _, err := NewInitiator(InitiatorConfig{HostNQN: "node-1"}); err == nil {
		t.Error("initiator accepted a host NQN that is not an NQN")
	}
}

func TestSysfsFindsNamespacesUnderControllersWithoutMultipath(t *testing.T) {
	h := newFakeHost(t)
	// nvme_core.multipath=N: no head under the subsystem, the namespace hangs
	// under the controller in /sys/class/nvme.
	dir := filepath.Join(h.sys, "class", "nvme-subsystem", "nvme-subsys3")
	h.write(filepath.Join(dir, "subsysnqn"), SubsystemNQN(volID)+"\n")
	h.write(filepath.Join(dir, "serial"), volID+"\n")
	h.write(filepath.Join(dir, "nvme3", "state"), "live\n")
	h.write(filepath.Join(h.sys, "class", "nvme", "nvme3", "nvme3n1", "size"), "2048\n")
	h.write(filepath.Join(h.dev, "nvme3n1"), "")
	i := newTestInitiator(t, h)
	dev, err := i.Device(context.Background(), volID, nil)
	if err != nil || dev != filepath.Join(h.dev, "nvme3n1") {
		t.Errorf("Device = %q, %v; want nvme3n1", dev, err)
	}
}

func TestAttachTimesOutOnCallerDeadline(t *testing.T) {
	h := newFakeHost(t)
	h.onConnect = func() ([]byte, error) { return nil, nil } // connects, but nothing ever appears
	i := newTestInitiator(t, h)
	i.cfg.AttachTimeout = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := i.Attach(ctx, volID, publishContext(volID))
	wantCode(t, err, codes.DeadlineExceeded, SubsystemNQN(volID))
	if time.Since(start) > 5*time.Second {
		t.Errorf("attach ignored the caller's deadline: %v", time.Since(start))
	}
}

func TestDetachReportsControllersThatStay(t *testing.T) {
	h := newFakeHost(t)
	h.addSubsystem(0, SubsystemNQN(volID), volID, NamespaceUUID(volID), true)
	h.disconnectFails = true
	err := newTestInitiator(t, h).Detach(context.Background(), volID, publishContext(volID))
	wantCode(t, err, codes.Internal, SubsystemNQN(volID), "nvme0", "remain")
}
