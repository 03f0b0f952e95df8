package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func itoa(i int) string { return strconv.Itoa(i) }

// writeSource provisions a claim and writes a token into it through a Pod.
func writeSource(t *testing.T, ns, claim string) string {
	t.Helper()
	createClaim(t, ns, claim, claimOpts{size: "64Mi"})
	want := token(t)
	runToCompletion(t, podWithClaim(ns, "writer", claim, false, v1.RestartPolicyNever, "echo "+want+" > /data/file && sync"))
	boundPV(t, ns, claim)
	deletePod(t, ns, "writer")
	return want
}

// A VolumeSnapshot of a PVC, restored into a new PVC, carries the data.
func testSnapshotRestore(t *testing.T) {
	ns := newNamespace(t, "snapshot")
	want := writeSource(t, ns, "source")
	ctx := context.Background()
	class := "csi-hub"
	src := "source"
	snap := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: "snap", Namespace: ns},
		Spec: snapv1.VolumeSnapshotSpec{
			VolumeSnapshotClassName: &class,
			Source:                  snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &src},
		},
	}
	if _, err := env.snap.SnapshotV1().VolumeSnapshots(ns).Create(ctx, snap, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create VolumeSnapshot: %v", err)
	}
	waitFor(t, "VolumeSnapshot ready", shortWait, func(ctx context.Context) (bool, error) {
		s, err := env.snap.SnapshotV1().VolumeSnapshots(ns).Get(ctx, "snap", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return s.Status != nil && s.Status.ReadyToUse != nil && *s.Status.ReadyToUse, nil
	})
	group := "snapshot.storage.k8s.io"
	createClaim(t, ns, "restored", claimOpts{size: "64Mi",
		dataSource: &v1.TypedObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: "snap"}})
	got := runToCompletion(t, podWithClaim(ns, "reader", "restored", false, v1.RestartPolicyNever, "cat /data/file"))
	if strings.TrimSpace(got) != want {
		t.Fatalf("restored volume holds %q, want %q", got, want)
	}
}

// A PVC cloned from another PVC carries the data, and writing to the clone
// leaves the source untouched.
func testClone(t *testing.T) {
	ns := newNamespace(t, "clone")
	want := writeSource(t, ns, "source")
	createClaim(t, ns, "clone", claimOpts{size: "64Mi",
		dataSource: &v1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "source"}})
	got := runToCompletion(t, podWithClaim(ns, "reader", "clone", false, v1.RestartPolicyNever,
		"cat /data/file && echo changed > /data/file && sync"))
	if strings.TrimSpace(got) != want {
		t.Fatalf("clone holds %q, want %q", got, want)
	}
	got = runToCompletion(t, podWithClaim(ns, "source-reader", "source", false, v1.RestartPolicyNever, "cat /data/file"))
	if strings.TrimSpace(got) != want {
		t.Fatalf("source holds %q after writing to the clone, want %q", got, want)
	}
}
