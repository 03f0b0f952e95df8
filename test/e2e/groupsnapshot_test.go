package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A VolumeGroupSnapshot of three labelled PVCs, written by one Pod, becomes
// ready with three member VolumeSnapshots; each restores into a new PVC
// that a Pod reads the data back from; deleting the group removes its
// contents.
func testGroupSnapshot(t *testing.T) {
	ns := newNamespace(t, "group")
	ctx := context.Background()
	claims := []string{"data", "log", "index"}
	var script []string
	for _, c := range claims {
		pvc := createClaim(t, ns, c, claimOpts{size: "64Mi"})
		pvc.Labels = map[string]string{"app": "db"}
		if _, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		script = append(script, "echo "+c+"-"+ns+" > /"+c+"/file")
	}
	runToCompletion(t, podWithClaims(ns, "writer", claims, strings.Join(script, " && ")+" && sync"))
	deletePod(t, ns, "writer")

	class := ns + "-group"
	cls := &groupv1.VolumeGroupSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Driver: "block.csi-hub.io",
		DeletionPolicy: snapv1.VolumeSnapshotContentDelete}
	if _, err := env.snap.GroupsnapshotV1().VolumeGroupSnapshotClasses().Create(ctx, cls, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.snap.GroupsnapshotV1().VolumeGroupSnapshotClasses().Delete(ctx, class, metav1.DeleteOptions{})
	})
	vgs := &groupv1.VolumeGroupSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "backup"},
		Spec: groupv1.VolumeGroupSnapshotSpec{VolumeGroupSnapshotClassName: &class,
			Source: groupv1.VolumeGroupSnapshotSource{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}}
	if _, err := env.snap.GroupsnapshotV1().VolumeGroupSnapshots(ns).Create(ctx, vgs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var content string
	waitFor(t, "VolumeGroupSnapshot ready"+warningsLater(ns), shortWait, func(ctx context.Context) (bool, error) {
		g, err := env.snap.GroupsnapshotV1().VolumeGroupSnapshots(ns).Get(ctx, "backup", metav1.GetOptions{})
		if err != nil || g.Status == nil || g.Status.ReadyToUse == nil || !*g.Status.ReadyToUse {
			return false, err
		}
		content = *g.Status.BoundVolumeGroupSnapshotContentName
		return true, nil
	})
	member := map[string]string{} // source claim -> member VolumeSnapshot
	waitFor(t, "3 ready member VolumeSnapshots", shortWait, func(ctx context.Context) (bool, error) {
		list, err := env.snap.SnapshotV1().VolumeSnapshots(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, vs := range list.Items {
			owned := slices.ContainsFunc(vs.OwnerReferences, func(o metav1.OwnerReference) bool { return o.Kind == "VolumeGroupSnapshot" })
			if owned && vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse && vs.Spec.Source.PersistentVolumeClaimName != nil {
				member[*vs.Spec.Source.PersistentVolumeClaimName] = vs.Name
			}
		}
		return len(member) == len(claims), nil
	})
	group := snapv1.GroupName
	var restored []string
	var read []string
	for _, c := range claims {
		createClaim(t, ns, "restored-"+c, claimOpts{size: "64Mi",
			dataSource: &v1.TypedObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: member[c]}})
		restored = append(restored, "restored-"+c)
		read = append(read, "cat /restored-"+c+"/file")
	}
	got := runToCompletion(t, podWithClaims(ns, "reader", restored, strings.Join(read, " && ")))
	for _, c := range claims {
		if !strings.Contains(got, c+"-"+ns) {
			t.Errorf("restored member of %s does not hold its data; reader printed %q", c, got)
		}
	}
	deletePod(t, ns, "reader")

	if err := env.snap.GroupsnapshotV1().VolumeGroupSnapshots(ns).Delete(ctx, "backup", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "VolumeGroupSnapshotContent deleted", shortWait, func(ctx context.Context) (bool, error) {
		_, err := env.snap.GroupsnapshotV1().VolumeGroupSnapshotContents().Get(ctx, content, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// podWithClaims is podWithClaim for several claims, each mounted at /<claim>.
func podWithClaims(ns, name string, claims []string, script string) *v1.Pod {
	pod := podWithClaim(ns, name, claims[0], false, v1.RestartPolicyNever, script)
	pod.Spec.Volumes, pod.Spec.Containers[0].VolumeMounts = nil, nil
	for _, c := range claims {
		pod.Spec.Volumes = append(pod.Spec.Volumes, v1.Volume{Name: c, VolumeSource: v1.VolumeSource{
			PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
		pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, v1.VolumeMount{Name: c, MountPath: "/" + c})
	}
	return pod
}
