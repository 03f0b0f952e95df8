package plugin

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/status"
	utilexec "k8s.io/utils/exec"
	testingexec "k8s.io/utils/exec/testing"
)

// errInjected is what the fakes return where a test injects a failure.
var errInjected = errors.New("injected failure")

// fakeMounter is a scripted Mounter: a mount table in a map, an error per
// method name (per tool name for Command), and a log of every call with the
// test's root dir cut from paths so tables can spell them as "/staging".
type fakeMounter struct {
	mu      sync.Mutex
	root    string
	calls   []string
	mounted map[string]bool
	errs    map[string]error
	format  string // what GetDiskFormat finds ("" = blank)
}

func (m *fakeMounter) record(method string, args ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	call := method
	for _, a := range args {
		if a == "" {
			a = `""`
		}
		call += " " + strings.ReplaceAll(a, m.root, "")
	}
	m.calls = append(m.calls, call)
	return m.errs[method]
}

func (m *fakeMounter) setMounted(path string, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mounted[path] = on
}

func (m *fakeMounter) isMounted(path string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mounted[path]
}

func (m *fakeMounter) IsMountPoint(path string) (bool, error) {
	if err := m.record("IsMountPoint", path); err != nil {
		return false, err
	}
	return m.isMounted(path), nil
}

func (m *fakeMounter) Mount(source, target, fsType string, options []string) error {
	if err := m.record("Mount", source, target, fsType, strings.Join(options, ",")); err != nil {
		return err
	}
	m.setMounted(target, true)
	return nil
}

func (m *fakeMounter) Unmount(target string) error {
	if err := m.record("Unmount", target); err != nil {
		return err
	}
	m.setMounted(target, false)
	return nil
}

func (m *fakeMounter) GetDiskFormat(device string) (string, error) {
	return m.format, m.record("GetDiskFormat", device)
}

func (m *fakeMounter) FormatAndMountSensitiveWithFormatOptions(source, target, fsType string, options, _, formatOptions []string) error {
	if err := m.record("FormatAndMount", source, target, fsType, strings.Join(options, ","), strings.Join(formatOptions, " ")); err != nil {
		return err
	}
	m.setMounted(target, true)
	return nil
}

// NeedResize says no, so a successful stage does not go on to grow.
func (m *fakeMounter) NeedResize(devicePath, deviceMountPath string) (bool, error) {
	return false, m.record("NeedResize", devicePath, deviceMountPath)
}

func (m *fakeMounter) Resize(devicePath, deviceMountPath string) (bool, error) {
	err := m.record("Resize", devicePath, deviceMountPath)
	return err == nil, err
}

// Command runs nothing: the tool answers errs[name] with empty output.
func (m *fakeMounter) Command(name string, args ...string) utilexec.Cmd {
	_ = m.record("Command", append([]string{name}, args...)...)
	m.mu.Lock()
	err := m.errs[name]
	m.mu.Unlock()
	answer := func() ([]byte, []byte, error) { return nil, nil, err }
	return testingexec.InitFakeCmd(&testingexec.FakeCmd{
		CombinedOutputScript: []testingexec.FakeAction{answer},
		OutputScript:         []testingexec.FakeAction{answer},
	}, name, args...)
}

// fakeInitiator is a transport whose one volume is /dev/fake0 once attached,
// and which makes read-only devices /dev/fake-ro (a readOnlyAttacher).
type fakeInitiator struct {
	mu       sync.Mutex
	attached bool
	calls    []string
}

const fakeDevice, fakeRODevice = "/dev/fake0", "/dev/fake-ro"

func (f *fakeInitiator) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeInitiator) Name() string { return "fake" }

func (f *fakeInitiator) Attach(_ context.Context, volumeID string, _ map[string]string) (string, error) {
	f.record("Attach " + volumeID)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached = true
	return fakeDevice, nil
}

func (f *fakeInitiator) Detach(_ context.Context, volumeID string, _ map[string]string) error {
	f.record("Detach " + volumeID)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached = false
	return nil
}

func (f *fakeInitiator) Device(context.Context, string, map[string]string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attached {
		return fakeDevice, nil
	}
	return "", nil
}

func (f *fakeInitiator) Rescan(_ context.Context, volumeID, devicePath string) error {
	f.record("Rescan " + volumeID + " " + devicePath)
	return nil
}

func (f *fakeInitiator) AttachReadOnly(_ context.Context, volumeID string, _ map[string]string) (string, error) {
	f.record("AttachReadOnly " + volumeID)
	return fakeRODevice, nil
}

func (f *fakeInitiator) DetachDevice(_ context.Context, volumeID string, _ map[string]string, devicePath string) error {
	f.record("DetachDevice " + volumeID + " " + devicePath)
	return nil
}

// fakeNode is a NodeServer on a fake Mounter and initiator, with its state
// dir and every path of a test below root.
type fakeNode struct {
	t    *testing.T
	n    *NodeServer
	m    *fakeMounter
	ini  *fakeInitiator
	root string
}

const fakeVol = "vol-1"

var fakePC = map[string]string{"transport": "fake", "volumeID": fakeVol}

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	root := t.TempDir()
	f := &fakeNode{t: t, root: root, ini: &fakeInitiator{},
		m: &fakeMounter{root: root, mounted: map[string]bool{}, errs: map[string]error{}}}
	n, err := NewNodeServer(NodeConfig{DriverName: "hub.csi.test", NodeID: "node-1", Initiator: f.ini,
		StateDir: filepath.Join(root, "state"), Mounter: f.m})
	if err != nil {
		t.Fatal(err)
	}
	f.n = n
	return f
}

func (f *fakeNode) path(name string) string { return filepath.Join(f.root, name) }

// staged records vol-1 as staged at /staging on an attached /dev/fake0 (as a
// completed NodeStageVolume leaves it), published at each of targets.
func (f *fakeNode) staged(block bool, targets ...string) *nodeRecord {
	f.t.Helper()
	rec := &nodeRecord{VolumeID: fakeVol, StagingPath: f.path("staging"), Block: block, Device: fakeDevice,
		PublishContext: fakePC, Targets: map[string]publishedTarget{}}
	if !block {
		rec.FsType = "ext4"
		f.m.mounted[rec.StagingPath] = true
	}
	for _, t := range targets {
		rec.Targets[f.path(t)] = publishedTarget{}
		f.m.mounted[f.path(t)] = true
		if err := os.MkdirAll(f.path(t), 0o750); err != nil {
			f.t.Fatal(err)
		}
	}
	f.ini.attached = true
	if err := f.n.records.save(rec); err != nil {
		f.t.Fatal(err)
	}
	return rec
}

// loadRecord returns vol-1's node record, nil if there is none.
func (f *fakeNode) loadRecord() *nodeRecord {
	f.t.Helper()
	rec, err := f.n.records.load(fakeVol)
	if errors.Is(err, errNoRecord) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return rec
}

// check asserts err's code, that its message (root cut) holds every word, and
// the exact Mounter and initiator calls.
func (f *fakeNode) check(err error, code string, words, mounterCalls, initiatorCalls []string) {
	f.t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code().String() != code {
		f.t.Fatalf("got %v, want code %s", err, code)
	}
	msg := strings.ReplaceAll(st.Message(), f.root, "")
	for _, w := range append(words, errInjected.Error()) {
		if !strings.Contains(msg, w) {
			f.t.Errorf("message %q does not name %q", msg, w)
		}
	}
	if got := strings.Join(f.m.calls, "\n"); got != strings.Join(mounterCalls, "\n") {
		f.t.Errorf("mounter calls:\n%s\nwant:\n%s", got, strings.Join(mounterCalls, "\n"))
	}
	if got := strings.Join(f.ini.calls, "\n"); got != strings.Join(initiatorCalls, "\n") {
		f.t.Errorf("initiator calls:\n%s\nwant:\n%s", got, strings.Join(initiatorCalls, "\n"))
	}
}
