package plugin_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/plugin"
	"github.com/csi-hub/csi-hub/plugin/store"
)

// buildPlugin compiles cmd/csi-hub-plugin into dir: the crash test must kill
// the real binary, not an in-process server.
func buildPlugin(t *testing.T, dir string) string {
	t.Helper()
	// go test puts its own go first in PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go in PATH to build the plugin: %v", err)
	}
	bin := filepath.Join(dir, "csi-hub-plugin")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/csi-hub/csi-hub/cmd/csi-hub-plugin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type pluginProc struct {
	cmd  *exec.Cmd
	conn *grpc.ClientConn
	cc   csi.ControllerClient
}

func startPlugin(t *testing.T, bin, poolDir, sock, logPath string) *pluginProc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--mode=controller", "--node-id=crash-node", "--pool-dir="+poolDir,
		"--endpoint=unix://"+sock, "-v=2")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	p := &pluginProc{cmd: cmd, conn: conn, cc: csi.NewControllerClient(conn)}
	ic := csi.NewIdentityClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := ic.Probe(ctx, &csi.ProbeRequest{})
		cancel()
		if err == nil {
			return p
		}
		if time.Now().After(deadline) {
			p.kill()
			log, _ := os.ReadFile(logPath)
			t.Fatalf("plugin did not come up: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *pluginProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	p.conn.Close()
}

// crashWorld remembers what the test asked for and what it was told, to
// check the driver against after every restart.
type crashWorld struct {
	mu      sync.Mutex
	volIDs  map[string]string // volume name -> ID the driver answered
	snapIDs map[string]string // snapshot name -> ID
	reqs    map[string]*csi.CreateVolumeRequest
	deleted map[string]bool // volume names whose delete was sent
	// Group snapshots of groupSrcs: names asked for, and the IDs answered.
	groupSrcs  []string
	groupAsked map[string]bool
	groupIDs   map[string]string
}

func (w *crashWorld) sawVolume(name, id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.volIDs[name]; ok && old != id {
		panic(fmt.Sprintf("volume %s: ID changed from %s to %s", name, old, id))
	}
	w.volIDs[name] = id
}

// TestKill9DuringCreates runs the real binary, fires CreateVolume (thick and
// restore-from-snapshot, both slow), CreateSnapshot, CreateVolumeGroupSnapshot,
// ControllerExpandVolume (thick) and DeleteVolume at it, and
// SIGKILLs it at random instants across those operations. After each restart
// every record must have its file and every file its record, and repeating
// each create must succeed with a consistent ID; a group snapshot is there
// whole (every member) or not at all.
func TestKill9DuringCreates(t *testing.T) {
	// Integration tier: a real binary, real processes and a minute of work.
	testutil.SkipUnit(t, "the csi-hub-plugin binary (go build) and kills it with SIGKILL in 12 rounds of creates; it runs in make test (go test ./plugin/)")
	dir := t.TempDir()
	bin := buildPlugin(t, dir)
	poolDir := filepath.Join(dir, "pool")
	sockDir, err := os.MkdirTemp("", "csi-hub-crash-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "csi.sock")
	logPath := filepath.Join(dir, "plugin.log")
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("random seed %d", seed)
	ctx := context.Background()

	w := &crashWorld{volIDs: map[string]string{}, snapIDs: map[string]string{}, reqs: map[string]*csi.CreateVolumeRequest{}, deleted: map[string]bool{},
		groupAsked: map[string]bool{}, groupIDs: map[string]string{}}

	// A source volume with real data makes snapshots and restores copy bytes,
	// so they take long enough to be killed in the middle.
	p := startPlugin(t, bin, poolDir, sock, logPath)
	srcReq := createReq("source", 128*mib, nil)
	w.reqs["source"] = srcReq
	src := mustCreate(t, p.cc, srcReq)
	w.sawVolume("source", src.GetVolumeId())
	fill := bytes.Repeat([]byte{0xab}, int(mib))
	for off := int64(0); off < 96*mib; off += 2 * mib {
		testutil.WriteAt(t, filepath.Join(poolDir, src.GetVolumeId()+".img"), off, fill)
	}
	base, err := p.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "base", SourceVolumeId: src.GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}
	w.snapIDs["base"] = base.GetSnapshot().GetSnapshotId()
	// Two more volumes with data for group snapshots (their own sources: a
	// single snapshot of "source" would hold it busy for a group).
	for _, name := range []string{"group-a", "group-b"} {
		req := createReq(name, 64*mib, nil)
		w.reqs[name] = req
		v := mustCreate(t, p.cc, req)
		w.sawVolume(name, v.GetVolumeId())
		w.groupSrcs = append(w.groupSrcs, v.GetVolumeId())
		for off := int64(0); off < 48*mib; off += 2 * mib {
			testutil.WriteAt(t, filepath.Join(poolDir, v.GetVolumeId()+".img"), off, fill)
		}
	}
	gc := func(p *pluginProc) csi.GroupControllerClient { return csi.NewGroupControllerClient(p.conn) }

	round := func(p *pluginProc, i int) {
		var wg sync.WaitGroup
		thick := createReq(fmt.Sprintf("thick-%d", i), 256*mib, map[string]string{"type": "thick"})
		restore := createReq(fmt.Sprintf("restore-%d", i), 160*mib, nil)
		restore.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: w.snapIDs["base"]}}}
		w.mu.Lock()
		w.reqs[thick.Name], w.reqs[restore.Name] = thick, restore
		var toDelete []string
		for name := range w.volIDs {
			if name != "source" && !w.deleted[name] && (strings.HasSuffix(name, fmt.Sprintf("-%d", i-2))) {
				toDelete = append(toDelete, name)
				w.deleted[name] = true
			}
		}
		w.mu.Unlock()
		for _, req := range []*csi.CreateVolumeRequest{thick, restore} {
			wg.Go(func() {
				if resp, err := p.cc.CreateVolume(ctx, req); err == nil {
					w.sawVolume(req.Name, resp.GetVolume().GetVolumeId())
				}
			})
		}
		wg.Go(func() {
			name := fmt.Sprintf("snap-%d", i)
			if resp, err := p.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: src.GetVolumeId()}); err == nil {
				w.mu.Lock()
				w.snapIDs[name] = resp.GetSnapshot().GetSnapshotId()
				w.mu.Unlock()
			}
		})
		wg.Go(func() {
			name := fmt.Sprintf("group-%d", i)
			w.mu.Lock()
			w.groupAsked[name] = true
			w.mu.Unlock()
			if resp, err := gc(p).CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: name, SourceVolumeIds: w.groupSrcs}); err == nil {
				w.mu.Lock()
				w.groupIDs[name] = resp.GetGroupSnapshot().GetGroupSnapshotId()
				w.mu.Unlock()
			}
		})
		w.mu.Lock()
		growID := w.volIDs[fmt.Sprintf("thick-%d", i-1)]
		w.mu.Unlock()
		if growID != "" {
			wg.Go(func() {
				p.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: growID,
					CapacityRange: &csi.CapacityRange{RequiredBytes: 256*mib + int64(i)*32*mib}})
			})
		}
		for _, name := range toDelete {
			wg.Go(func() {
				w.mu.Lock()
				id := w.volIDs[name]
				w.mu.Unlock()
				p.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			})
		}
		wg.Wait()
	}

	// Round 0 runs to completion to learn how long a round takes.
	start := time.Now()
	round(p, 0)
	roundTime := time.Since(start)
	t.Logf("an uninterrupted round takes %v", roundTime)
	p.kill()

	const rounds = 12
	for i := 1; i <= rounds; i++ {
		p = startPlugin(t, bin, poolDir, sock, logPath)
		checkConsistent(t, p, poolDir, w, i)
		// Kill at a random instant inside the round; some rounds get very early kills.
		delay := time.Duration(rng.Int64N(int64(roundTime)*6/5 + 1))
		if i%4 == 1 {
			delay = time.Duration(rng.Int64N(int64(2 * time.Millisecond)))
		}
		done := make(chan struct{})
		go func() { round(p, i); close(done) }()
		if i%3 == 0 {
			// Every third round is killed while a copy is certainly under way
			// (a temporary file exists), so the test cannot pass on kills that
			// all fell between operations, as it could on a loaded machine.
			delay = killWhenTempFileAppears(poolDir, 3*roundTime+5*time.Second)
		} else {
			time.Sleep(delay)
		}
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
		<-done
		p.conn.Close()
		t.Logf("round %d: killed after %v", i, delay)
		// The store must open cleanly after any kill: never a half-written record.
		st, err := store.Open(filepath.Join(poolDir, plugin.StoreFileName))
		if err != nil {
			t.Fatalf("round %d: store unreadable after kill -9: %v", i, err)
		}
		if _, _, err := st.Volumes("", 0); err != nil {
			t.Fatalf("round %d: volume records unreadable: %v", i, err)
		}
		st.Close()
	}
	p = startPlugin(t, bin, poolDir, sock, logPath)
	defer p.kill()
	checkConsistent(t, p, poolDir, w, rounds+1)

	// The kills must have interrupted real work, or this test proved nothing.
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	interrupted := 0
	for _, line := range strings.Split(string(log), "\n") {
		if !strings.Contains(line, "Pool reconciled") {
			continue
		}
		for _, field := range []string{"removedTempFiles", "removedOrphanFiles", "finishedCreates", "rolledBackCreates", "finishedDeletes", "finishedExpansions"} {
			if strings.Contains(line, field+"=[") {
				interrupted++
				t.Logf("restart repaired: %s", line[strings.Index(line, "removedTempFiles"):])
				break
			}
		}
	}
	if interrupted == 0 {
		t.Fatal("no restart found interrupted work: the kills all missed the operations")
	}
	t.Logf("%d of %d restarts repaired interrupted work", interrupted, rounds)
}

// killWhenTempFileAppears waits until the pool holds a temporary file (a
// create, restore or snapshot copy in progress) or until limit, and returns
// how long it waited.
func killWhenTempFileAppears(poolDir string, limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit {
		entries, _ := os.ReadDir(poolDir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				return time.Since(start)
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return time.Since(start)
}

// checkConsistent compares the pool directory with what the driver lists,
// then repeats every create (same ID expected) and every delete.
func checkConsistent(t *testing.T, p *pluginProc, poolDir string, w *crashWorld, round int) {
	t.Helper()
	ctx := context.Background()
	files := map[string]int64{}
	entries, err := os.ReadDir(poolDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("round %d: temporary file %s survived the restart", round, e.Name())
		}
		if id, ok := strings.CutSuffix(e.Name(), ".img"); ok {
			fi, _ := e.Info()
			files[id] = fi.Size()
		}
	}
	records := map[string]int64{}
	vols, err := p.cc.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range vols.GetEntries() {
		records[e.GetVolume().GetVolumeId()] = e.GetVolume().GetCapacityBytes()
		h, err := p.cc.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: e.GetVolume().GetVolumeId()})
		if err != nil || len(h.GetVolumeHealth().GetHealthStatuses()) != 0 {
			t.Errorf("round %d: volume %s unhealthy after restart: %v %v", round, e.GetVolume().GetVolumeId(), h, err)
		}
	}
	snaps, err := p.cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	members := map[string]int{} // group snapshot ID -> members listed
	for _, e := range snaps.GetEntries() {
		if g := e.GetSnapshot().GetGroupSnapshotId(); g != "" {
			members[g]++
		}
		records[e.GetSnapshot().GetSnapshotId()] = e.GetSnapshot().GetSizeBytes()
		if !e.GetSnapshot().GetReadyToUse() {
			t.Errorf("round %d: snapshot %s not ready after restart", round, e.GetSnapshot().GetSnapshotId())
		}
	}
	for g, n := range members {
		if n != len(w.groupSrcs) {
			t.Errorf("round %d: group snapshot %s has %d of %d members after restart", round, g, n, len(w.groupSrcs))
		}
	}
	for id, size := range records {
		if fsize, ok := files[id]; !ok {
			t.Errorf("round %d: record %s has no file", round, id)
		} else if fsize != size {
			t.Errorf("round %d: %s file is %d bytes, record says %d", round, id, fsize, size)
		}
	}
	for id := range files {
		if _, ok := records[id]; !ok {
			t.Errorf("round %d: file %s has no record", round, id)
		}
	}
	// Repeat every create the driver may have seen: it must succeed, and the ID
	// must be the one already answered (if any) and stay the same on a repeat.
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, req := range w.reqs {
		if w.deleted[name] {
			if id, ok := w.volIDs[name]; ok {
				if _, err := p.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
					t.Errorf("round %d: repeating delete of %s: %v", round, name, err)
				}
				if _, err := p.cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id}); err == nil {
					t.Errorf("round %d: deleted volume %s still exists", round, name)
				}
			}
			continue
		}
		for range 2 {
			resp, err := p.cc.CreateVolume(ctx, req)
			if err != nil {
				t.Fatalf("round %d: repeating CreateVolume %s: %v", round, name, err)
			}
			id := resp.GetVolume().GetVolumeId()
			if old, ok := w.volIDs[name]; ok && old != id {
				t.Fatalf("round %d: CreateVolume %s answered %s, earlier %s", round, name, id, old)
			}
			w.volIDs[name] = id
		}
	}
	gcl := csi.NewGroupControllerClient(p.conn)
	for name := range w.groupAsked {
		for range 2 {
			resp, err := gcl.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: name, SourceVolumeIds: w.groupSrcs})
			if err != nil {
				t.Fatalf("round %d: repeating CreateVolumeGroupSnapshot %s: %v", round, name, err)
			}
			g := resp.GetGroupSnapshot()
			if old, ok := w.groupIDs[name]; ok && old != g.GetGroupSnapshotId() {
				t.Fatalf("round %d: CreateVolumeGroupSnapshot %s answered %s, earlier %s", round, name, g.GetGroupSnapshotId(), old)
			}
			if !g.GetReadyToUse() || len(g.GetSnapshots()) != len(w.groupSrcs) {
				t.Fatalf("round %d: group snapshot %s after restart: %v", round, name, g)
			}
			w.groupIDs[name] = g.GetGroupSnapshotId()
		}
	}
	for name, id := range w.snapIDs {
		s, err := p.cc.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: id})
		if err != nil || s.GetSnapshot().GetSnapshotId() != id {
			t.Errorf("round %d: snapshot %s (%s) answered before the kill is gone: %v", round, name, id, err)
		}
	}
}
