package plugin_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
	"github.com/csi-hub/csi-hub/plugin/pool"
)

func TestGroupSnapshotLifecycle(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc, gc := d.ControllerClient(), d.GroupControllerClient()
	ctx := context.Background()

	caps, err := d.IdentityClient().GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(caps.String(), csi.PluginCapability_Service_GROUP_CONTROLLER_SERVICE.String()) {
		t.Fatalf("GROUP_CONTROLLER_SERVICE not advertised: %v", caps)
	}
	gcaps, err := gc.GroupControllerGetCapabilities(ctx, &csi.GroupControllerGetCapabilitiesRequest{})
	if err != nil || gcaps.GetCapabilities()[0].GetRpc().GetType() != csi.GroupControllerServiceCapability_RPC_CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT {
		t.Fatalf("group capabilities %v %v", gcaps, err)
	}

	var ids []string
	data := map[string][]byte{}
	for _, name := range []string{"data", "log", "index"} {
		v := mustCreate(t, cc, createReq(name, 8*mib, nil))
		ids = append(ids, v.GetVolumeId())
		data[v.GetVolumeId()] = bytes.Repeat([]byte(name+"!"), 1000)
		testutil.WriteAt(t, filepath.Join(d.PoolDir, v.GetVolumeId()+".img"), mib, data[v.GetVolumeId()])
	}
	req := &csi.CreateVolumeGroupSnapshotRequest{Name: "group-a", SourceVolumeIds: ids,
		Parameters: map[string]string{"csi.storage.k8s.io/volumegroupsnapshot/name": "a"}}
	resp, err := gc.CreateVolumeGroupSnapshot(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	g := resp.GetGroupSnapshot()
	if !g.GetReadyToUse() || g.GetGroupSnapshotId() == "" || g.GetCreationTime() == nil || len(g.GetSnapshots()) != 3 {
		t.Fatalf("group snapshot %v", g)
	}
	snapOf := map[string]string{}
	for _, s := range g.GetSnapshots() {
		if s.GetGroupSnapshotId() != g.GetGroupSnapshotId() || !s.GetReadyToUse() || s.GetSizeBytes() != 8*mib {
			t.Fatalf("member %v", s)
		}
		snapOf[s.GetSourceVolumeId()] = s.GetSnapshotId()
	}
	for _, id := range ids {
		if snapOf[id] == "" {
			t.Fatalf("no member for volume %s: %v", id, g)
		}
	}

	// Idempotent by name; another set of volumes under the same name is refused.
	again, err := gc.CreateVolumeGroupSnapshot(ctx, req)
	if err != nil || again.GetGroupSnapshot().GetGroupSnapshotId() != g.GetGroupSnapshotId() {
		t.Fatalf("repeated create: %v %v", again, err)
	}
	_, err = gc.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "group-a", SourceVolumeIds: ids[:2]})
	wantCode(t, err, codes.AlreadyExists, "source volumes")

	// Writes after the group snapshot do not show in it; each member restores.
	for _, id := range ids {
		testutil.WriteAt(t, filepath.Join(d.PoolDir, id+".img"), mib, bytes.Repeat([]byte("later"), 1000))
	}
	for i, id := range ids {
		r := createReq("restore-"+id, 8*mib, nil)
		r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapOf[id]}}}
		v := mustCreate(t, cc, r)
		if got := testutil.ReadAt(t, filepath.Join(d.PoolDir, v.GetVolumeId()+".img"), mib, len(data[id])); !bytes.Equal(got, data[id]) {
			t.Fatalf("member %d restored %q...", i, got[:10])
		}
	}

	get, err := gc.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: g.GetGroupSnapshotId(),
		SnapshotIds: []string{snapOf[ids[2]], snapOf[ids[0]], snapOf[ids[1]]}})
	if err != nil || !get.GetGroupSnapshot().GetReadyToUse() || len(get.GetGroupSnapshot().GetSnapshots()) != 3 {
		t.Fatalf("get: %v %v", get, err)
	}
	_, err = gc.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: g.GetGroupSnapshotId(), SnapshotIds: []string{snapOf[ids[0]]}})
	wantCode(t, err, codes.InvalidArgument, "snapshot_ids")
	list, err := cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: snapOf[ids[1]]})
	if err != nil || len(list.GetEntries()) != 1 || list.GetEntries()[0].GetSnapshot().GetGroupSnapshotId() != g.GetGroupSnapshotId() {
		t.Fatalf("list member: %v %v", list, err)
	}
	_, err = cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snapOf[ids[0]]})
	wantCode(t, err, codes.FailedPrecondition, "DeleteVolumeGroupSnapshot")

	members := []string{snapOf[ids[0]], snapOf[ids[1]], snapOf[ids[2]]}
	if _, err := gc.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: g.GetGroupSnapshotId(), SnapshotIds: members}); err != nil {
		t.Fatal(err)
	}
	for _, id := range members {
		if _, err := os.Stat(filepath.Join(d.PoolDir, id+".img")); !os.IsNotExist(err) {
			t.Fatalf("member %s file still there: %v", id, err)
		}
		_, err := cc.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: id})
		wantCode(t, err, codes.NotFound, id)
	}
}

func TestGroupSnapshotDeleteAndBadInput(t *testing.T) {
	d := plugintest.Start(t, plugintest.Options{})
	cc, gc := d.ControllerClient(), d.GroupControllerClient()
	ctx := context.Background()
	a := mustCreate(t, cc, createReq("a", 4*mib, nil)).GetVolumeId()
	b := mustCreate(t, cc, createReq("b", 4*mib, nil)).GetVolumeId()

	for _, tc := range []struct {
		req   *csi.CreateVolumeGroupSnapshotRequest
		code  codes.Code
		field string
	}{
		{&csi.CreateVolumeGroupSnapshotRequest{SourceVolumeIds: []string{a}}, codes.InvalidArgument, "name"},
		{&csi.CreateVolumeGroupSnapshotRequest{Name: "g"}, codes.InvalidArgument, "source_volume_ids"},
		{&csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{a, a}}, codes.InvalidArgument, "twice"},
		{&csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{a, ""}}, codes.InvalidArgument, "source_volume_ids[1]"},
		{&csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{a, "vol-missing"}}, codes.NotFound, "source_volume_ids[1]"},
		{&csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{a}, Parameters: map[string]string{"speed": "max"}}, codes.InvalidArgument, "speed"},
	} {
		_, err := gc.CreateVolumeGroupSnapshot(ctx, tc.req)
		wantCode(t, err, tc.code, tc.field)
	}
	_, err := gc.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{})
	wantCode(t, err, codes.InvalidArgument, "group_snapshot_id")
	_, err = gc.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{})
	wantCode(t, err, codes.InvalidArgument, "group_snapshot_id")
	noMembers(t, d)

	g, err := gc.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	id := g.GetGroupSnapshot().GetGroupSnapshotId()
	_, err = gc.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: id, SnapshotIds: []string{"snap-other"}})
	wantCode(t, err, codes.InvalidArgument, "snapshot_ids")
	for range 2 { // deleting again is success
		if _, err := gc.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: id}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = gc.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: id})
	wantCode(t, err, codes.NotFound, id)
	noMembers(t, d)
	// The name is free again.
	if _, err := gc.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{b}}); err != nil {
		t.Fatal(err)
	}
}

// TestGroupSnapshotAllOrNothing breaks the copy of the second member: no
// member snapshot, record or file may be left.
func TestGroupSnapshotAllOrNothing(t *testing.T) {
	var d *plugintest.Driver
	var ids []string
	d = plugintest.Start(t, plugintest.Options{GroupCopy: pool.GroupOptions{BetweenCopies: func(i int) {
		if i == 0 {
			os.Remove(filepath.Join(d.PoolDir, ids[1]+".img"))
		}
	}}})
	cc, gc := d.ControllerClient(), d.GroupControllerClient()
	ctx := context.Background()
	for _, name := range []string{"a", "b", "c"} {
		ids = append(ids, mustCreate(t, cc, createReq(name, 4*mib, nil)).GetVolumeId())
	}
	_, err := gc.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: ids})
	wantCode(t, err, codes.Internal, ids[1])
	noMembers(t, d)
}

// noMembers: no snapshot record and no snapshot or temporary file in the pool.
func noMembers(t *testing.T, d *plugintest.Driver) {
	t.Helper()
	list, err := d.ControllerClient().ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{})
	if err != nil || len(list.GetEntries()) != 0 {
		t.Fatalf("snapshots left: %v %v", list, err)
	}
	entries, _ := os.ReadDir(d.PoolDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), pool.SnapshotPrefix) || strings.HasPrefix(e.Name(), ".tmp-") {
			t.Fatalf("file left in the pool: %s", e.Name())
		}
	}
}

// TestGroupSnapshotOnePointInTime writes numbered rounds to three volumes,
// always in the same order, while group snapshots are cut. A group that
// shows the volumes at one point in time holds a prefix of the rounds: the
// first volume at most one round ahead of the last, never behind. The first
// copy attempt is forced to see a round land between its first and second
// member copies, which a copy without the check would keep.
func TestGroupSnapshotOnePointInTime(t *testing.T) {
	t.Parallel() // it mostly sleeps between rounds; its driver is its own
	var mu sync.Mutex
	var round uint64
	var paths []string
	writeRound := func() {
		mu.Lock()
		defer mu.Unlock()
		round++
		for _, p := range paths {
			testutil.WriteAt(t, p, 0, binary.LittleEndian.AppendUint64(nil, round))
		}
	}
	forced := 0
	d := plugintest.Start(t, plugintest.Options{GroupCopy: pool.GroupOptions{Settle: 5 * time.Millisecond,
		BetweenCopies: func(i int) {
			if i == 0 && forced < 1 {
				forced++
				writeRound()
			}
			time.Sleep(time.Millisecond)
		}}})
	cc, gc := d.ControllerClient(), d.GroupControllerClient()
	ctx := context.Background()
	var ids []string
	fill := bytes.Repeat([]byte{0x5a}, int(mib))
	for _, name := range []string{"a", "b", "c"} {
		id := mustCreate(t, cc, createReq(name, 32*mib, nil)).GetVolumeId()
		ids = append(ids, id)
		paths = append(paths, filepath.Join(d.PoolDir, id+".img"))
		for off := int64(mib); off < 4*mib; off += mib {
			testutil.WriteAt(t, paths[len(paths)-1], off, fill)
		}
	}
	writeRound()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			// A copy attempt succeeds only if no round lands while it
			// copies all three members; on a loaded 2-core machine that
			// takes tens of milliseconds (25 ms rounds starved it).
			case <-time.After(100 * time.Millisecond):
				writeRound()
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	for n := range 4 {
		resp, err := gc.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g" + string(rune('0'+n)), SourceVolumeIds: ids})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]uint64{}
		for _, s := range resp.GetGroupSnapshot().GetSnapshots() {
			seen[s.GetSourceVolumeId()] = binary.LittleEndian.Uint64(testutil.ReadAt(t, filepath.Join(d.PoolDir, s.GetSnapshotId()+".img"), 0, 8))
		}
		a, b, c := seen[ids[0]], seen[ids[1]], seen[ids[2]]
		t.Logf("group %d holds rounds %d %d %d", n, a, b, c)
		if a < b || b < c || a > c+1 {
			t.Fatalf("group %d is not one point in time: rounds %d, %d, %d", n, a, b, c)
		}
		time.Sleep(250 * time.Millisecond) // rounds land between the groups
	}
	if forced != 1 {
		t.Fatal("the forced write between copies did not happen")
	}
}
