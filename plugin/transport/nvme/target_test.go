package nvme

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/plugin/transport"
)

const testHost = "nqn.2014-08.org.nvmexpress:uuid:3f2a6c1e-1111-4222-8333-444455556666"

func newTestTarget(t *testing.T) (*Target, *fakeConfigfs) {
	t.Helper()
	cfs := newFakeConfigfs(t)
	tg, err := newTarget(TargetConfig{
		ConfigfsRoot:  cfs.root,
		ListenAddress: "127.0.0.1",
		TopologyKey:   "topology.block.csi-hub.io/zone",
		TopologyValue: "zone-a",
		BufferedIO:    BufferedIOAlways,
	}, cfs)
	if err != nil {
		t.Fatal(err)
	}
	return tg, cfs
}

func testVolume(t *testing.T, id string) transport.Volume {
	t.Helper()
	path := filepath.Join(t.TempDir(), id+".img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 64<<20); err != nil {
		t.Fatal(err)
	}
	return transport.Volume{ID: id, BackingFile: path, SizeBytes: 64 << 20}
}

func attr(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func wantCode(t *testing.T, err error, code codes.Code, substrings ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v: code %v, want %v", err, status.Code(err), code)
	}
	for _, s := range substrings {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestExportWritesSubsystemNamespaceAndPort(t *testing.T) {
	tg, cfs := newTestTarget(t)
	vol := testVolume(t, "vol-0123456789abcdef")
	if err := tg.Export(context.Background(), vol); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(cfs.root, "subsystems", NQNPrefix+vol.ID)
	ns := filepath.Join(sub, "namespaces", "1")
	port := filepath.Join(cfs.root, "ports", "1")
	for path, want := range map[string]string{
		filepath.Join(sub, "attr_allow_any_host"): "0",
		filepath.Join(sub, "attr_serial"):         "vol-0123456789abcdef",
		filepath.Join(sub, "attr_model"):          "csi-hub",
		filepath.Join(ns, "device_path"):          vol.BackingFile,
		filepath.Join(ns, "device_uuid"):          NamespaceUUID(vol.ID),
		filepath.Join(ns, "buffered_io"):          "1",
		filepath.Join(ns, "enable"):               "1",
		filepath.Join(port, "addr_trtype"):        "tcp",
		filepath.Join(port, "addr_adrfam"):        "ipv4",
		filepath.Join(port, "addr_traddr"):        "127.0.0.1",
		filepath.Join(port, "addr_trsvcid"):       "4420",
	} {
		if got := attr(t, path); got != want {
			t.Errorf("%s = %q, want %q", strings.TrimPrefix(path, cfs.root), got, want)
		}
	}
	link, err := os.Readlink(filepath.Join(port, "subsystems", NQNPrefix+vol.ID))
	if err != nil || link != sub {
		t.Errorf("port link -> %q (%v), want %q", link, err, sub)
	}
	if topo := tg.AccessibleTopology(); topo["topology.block.csi-hub.io/zone"] != "zone-a" || len(topo) != 1 {
		t.Errorf("topology %v, want the zone key only", topo)
	}
}

func TestExportIsIdempotentWithoutRewriting(t *testing.T) {
	tg, cfs := newTestTarget(t)
	vol := testVolume(t, "vol-1")
	ctx := context.Background()
	if err := tg.Export(ctx, vol); err != nil {
		t.Fatal(err)
	}
	cfs.ops = nil
	// A second export (controller restart with configfs intact) must not write:
	// the kernel refuses serial/uuid changes once hosts connected.
	if err := tg.Export(ctx, vol); err != nil {
		t.Fatal(err)
	}
	for _, w := range cfs.writes() {
		if !strings.HasPrefix(w, "mkdir ") { // mkdir of an existing group is EEXIST, harmless
			t.Errorf("second export changed configfs: %s", w)
		}
	}
}

func TestExportRebuildsAfterRebootAndRepointsNamespace(t *testing.T) {
	tg, cfs := newTestTarget(t)
	vol := testVolume(t, "vol-2")
	ctx := context.Background()
	if err := tg.Export(ctx, vol); err != nil {
		t.Fatal(err)
	}
	// The backing file moved (e.g. pool relocated): the enabled namespace must be
	// disabled, re-pointed and enabled again.
	moved := testVolume(t, "vol-2")
	if err := tg.Export(ctx, moved); err != nil {
		t.Fatal(err)
	}
	ns := filepath.Join(cfs.root, "subsystems", NQNPrefix+"vol-2", "namespaces", "1")
	if got := attr(t, filepath.Join(ns, "device_path")); got != moved.BackingFile {
		t.Errorf("device_path %q, want %q", got, moved.BackingFile)
	}
	if attr(t, filepath.Join(ns, "enable")) != "1" {
		t.Error("namespace not re-enabled")
	}
}

func TestExportErrors(t *testing.T) {
	tg, _ := newTestTarget(t)
	ctx := context.Background()
	err := tg.Export(ctx, transport.Volume{ID: "vol-3", BackingFile: "/nonexistent/vol-3.img"})
	wantCode(t, err, codes.FailedPrecondition, "vol-3", "/nonexistent/vol-3.img")
	err = tg.Export(ctx, transport.Volume{ID: "vol/../x", BackingFile: "/tmp/x"})
	wantCode(t, err, codes.InvalidArgument, "vol/../x")
	err = tg.Export(ctx, transport.Volume{ID: "vol-4", BackingFile: "relative.img"})
	wantCode(t, err, codes.InvalidArgument, "relative.img")
}

func TestExportRefusesPortListeningElsewhere(t *testing.T) {
	tg, cfs := newTestTarget(t)
	other, err := newTarget(TargetConfig{ConfigfsRoot: cfs.root, ListenAddress: "10.0.0.5", Port: 4421, BufferedIO: BufferedIOAlways}, cfs)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := other.Export(ctx, testVolume(t, "vol-a")); err != nil {
		t.Fatal(err)
	}
	err = tg.Export(ctx, testVolume(t, "vol-b"))
	wantCode(t, err, codes.Internal, "10.0.0.5:4421", "127.0.0.1:4420", "port 1")
}

func TestPublishAllowsHostAndReturnsContext(t *testing.T) {
	tg, cfs := newTestTarget(t)
	vol := testVolume(t, "vol-5")
	ctx := context.Background()
	// Publish without a prior Export: after a target reboot it must rebuild.
	pc, err := tg.Publish(ctx, vol, testHost)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		transport.KeyTransport: "nvme", transport.KeyVolumeID: "vol-5",
		KeyTraddr: "127.0.0.1", KeyTrsvcid: "4420", KeyNQN: NQNPrefix + "vol-5",
		KeySerial: "vol-5", KeyUUID: NamespaceUUID("vol-5"),
	}
	for k, v := range want {
		if pc[k] != v {
			t.Errorf("publish context %s = %q, want %q", k, pc[k], v)
		}
	}
	sub := filepath.Join(cfs.root, "subsystems", NQNPrefix+"vol-5")
	link, err := os.Readlink(filepath.Join(sub, "allowed_hosts", testHost))
	if err != nil || link != filepath.Join(cfs.root, "hosts", testHost) {
		t.Fatalf("allowed_hosts link -> %q (%v)", link, err)
	}
	if attr(t, filepath.Join(sub, "attr_allow_any_host")) != "0" {
		t.Error("subsystem allows any host")
	}
	if _, err := tg.Publish(ctx, vol, testHost); err != nil {
		t.Fatalf("second publish: %v", err)
	}

	if err := tg.Unpublish(ctx, vol, testHost); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(sub, "allowed_hosts", testHost)); !os.IsNotExist(err) {
		t.Errorf("allowed_hosts link still there: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(cfs.root, "hosts", testHost)); !os.IsNotExist(err) {
		t.Errorf("unused host entry still there: %v", err)
	}
	if err := tg.Unpublish(ctx, vol, testHost); err != nil {
		t.Errorf("second unpublish: %v", err)
	}
}

func TestUnpublishKeepsHostUsedByAnotherVolume(t *testing.T) {
	tg, cfs := newTestTarget(t)
	ctx := context.Background()
	a, b := testVolume(t, "vol-a"), testVolume(t, "vol-b")
	for _, v := range []transport.Volume{a, b} {
		if _, err := tg.Publish(ctx, v, testHost); err != nil {
			t.Fatal(err)
		}
	}
	if err := tg.Unpublish(ctx, a, testHost); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfs.root, "hosts", testHost)); err != nil {
		t.Errorf("host entry removed while vol-b still allows it: %v", err)
	}
}

func TestPublishRejectsNodeIDThatIsNotAnNQN(t *testing.T) {
	tg, cfs := newTestTarget(t)
	vol := testVolume(t, "vol-6")
	for _, id := range []string{"", "node-1", "nqn.x/../../ports", "nqn." + strings.Repeat("a", 220)} {
		_, err := tg.Publish(context.Background(), vol, id)
		wantCode(t, err, codes.NotFound, "node_id", "host NQN")
	}
	if got := cfs.tree(t); len(got) != 0 {
		t.Errorf("rejected publish left %v", got)
	}
}

func TestUnexportTearsDownInOrderAndLeavesNothing(t *testing.T) {
	tg, cfs := newTestTarget(t)
	ctx := context.Background()
	vol := testVolume(t, "vol-7")
	if _, err := tg.Publish(ctx, vol, testHost); err != nil {
		t.Fatal(err)
	}
	cfs.ops = nil
	if err := tg.Unexport(ctx, vol); err != nil {
		t.Fatal(err)
	}
	nqn := NQNPrefix + "vol-7"
	order := []string{
		"unlink ports/1/subsystems/" + nqn,
		"write subsystems/" + nqn + "/namespaces/1/enable=0",
		"rmdir subsystems/" + nqn + "/namespaces/1",
		"unlink subsystems/" + nqn + "/allowed_hosts/" + testHost,
		"rmdir subsystems/" + nqn,
		"rmdir hosts/" + testHost,
		"rmdir ports/1",
	}
	last := -1
	for _, op := range order {
		i := slices.Index(cfs.ops, op)
		if i < 0 {
			t.Fatalf("teardown did not %q; ops %v", op, cfs.ops)
		}
		if i < last {
			t.Errorf("%q came too early; ops %v", op, cfs.ops)
		}
		last = i
	}
	if got := cfs.tree(t); len(got) != 0 {
		t.Errorf("configfs not empty after unexport: %v", got)
	}
	if err := tg.Unexport(ctx, vol); err != nil {
		t.Errorf("second unexport: %v", err)
	}
}

func TestUnexportKeepsPortOfOtherVolumes(t *testing.T) {
	tg, cfs := newTestTarget(t)
	ctx := context.Background()
	a, b := testVolume(t, "vol-a"), testVolume(t, "vol-b")
	for _, v := range []transport.Volume{a, b} {
		if err := tg.Export(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := tg.Unexport(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(cfs.root, "ports", "1", "subsystems", NQNPrefix+"vol-b")); err != nil {
		t.Errorf("vol-b lost its port link: %v", err)
	}
}

func TestResizedRevalidatesNamespace(t *testing.T) {
	tg, cfs := newTestTarget(t)
	ctx := context.Background()
	vol := testVolume(t, "vol-8")
	if err := tg.Export(ctx, vol); err != nil {
		t.Fatal(err)
	}
	cfs.ops = nil
	if err := tg.Resized(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cfs.ops, "write subsystems/"+NQNPrefix+"vol-8/namespaces/1/revalidate_size=1") {
		t.Errorf("no revalidate_size write; ops %v", cfs.ops)
	}
}

func TestNewTargetValidatesAddresses(t *testing.T) {
	for _, cfg := range []TargetConfig{
		{ListenAddress: "not-an-ip"},
		{ListenAddress: "0.0.0.0"}, // wildcard without an advertise address
		{ListenAddress: "0.0.0.0", AdvertiseAddress: "::"},
		{ListenAddress: "127.0.0.1", Port: 70000},
		{ListenAddress: "127.0.0.1", PortID: "x"},
		{ListenAddress: "127.0.0.1", BufferedIO: "sometimes"},
	} {
		if _, err := newTarget(cfg, osFS{}); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	tg, err := newTarget(TargetConfig{ListenAddress: "::", AdvertiseAddress: "fd00::1"}, osFS{})
	if err != nil || tg.adrfam != "ipv6" || tg.cfg.AdvertiseAddress != "fd00::1" {
		t.Errorf("ipv6 wildcard: %v %+v", err, tg)
	}
	if _, err := NewTarget(TargetConfig{ConfigfsRoot: t.TempDir(), ListenAddress: "127.0.0.1"}); err == nil || !strings.Contains(err.Error(), "modprobe nvmet") {
		t.Errorf("missing configfs tree: %v", err)
	}
}

// TestUnpublishEndsTheHostsConnections: nvmet checks allowed_hosts only at
// connect time, so Unpublish unlinks the subsystem from its port (the kernel
// then deletes its controllers there) and links it again, after revoking the
// grant; a stale unpublish of a host without a grant leaves the connections of
// the host that still has one alone.
func TestUnpublishEndsTheHostsConnections(t *testing.T) {
	tg, cfs := newTestTarget(t)
	ctx := context.Background()
	vol := testVolume(t, "vol-kick")
	nqn := NQNPrefix + "vol-kick"
	if _, err := tg.Publish(ctx, vol, testHost); err != nil {
		t.Fatal(err)
	}
	portLink := "ports/1/subsystems/" + nqn
	cfs.ops = nil
	if err := tg.Unpublish(ctx, vol, testHost); err != nil {
		t.Fatal(err)
	}
	revoke := slices.Index(cfs.ops, "unlink subsystems/"+nqn+"/allowed_hosts/"+testHost)
	unlink := slices.Index(cfs.ops, "unlink "+portLink)
	relink := slices.Index(cfs.ops, "symlink "+portLink)
	if revoke < 0 || unlink < revoke || relink < unlink {
		t.Errorf("ops %q: want the grant revoked, then the port link removed and made again", cfs.ops)
	}
	if _, err := os.Readlink(filepath.Join(cfs.root, portLink)); err != nil {
		t.Errorf("subsystem not linked to its port after unpublish: %v", err)
	}

	// Another host holds the grant: unpublishing one that has none is a no-op.
	const other = "nqn.2014-08.org.nvmexpress:uuid:3f2a6c1e-1111-4222-8333-777788889999"
	if _, err := tg.Publish(ctx, vol, other); err != nil {
		t.Fatal(err)
	}
	cfs.ops = nil
	if err := tg.Unpublish(ctx, vol, testHost); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(cfs.ops, "unlink "+portLink) {
		t.Errorf("stale unpublish of %s dropped %s's connections: ops %q", testHost, other, cfs.ops)
	}
	// Its own unpublish does.
	cfs.ops = nil
	if err := tg.Unpublish(ctx, vol, other); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cfs.ops, "unlink "+portLink) || !slices.Contains(cfs.ops, "symlink "+portLink) {
		t.Errorf("unpublish of the granted host kept its connections: ops %q", cfs.ops)
	}
}
