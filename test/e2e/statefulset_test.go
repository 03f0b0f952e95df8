package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A 3-replica StatefulSet: one volume per replica from volumeClaimTemplates,
// each replica sees its own data.
func testStatefulSet(t *testing.T) {
	ns := newNamespace(t, "statefulset")
	replicas := int32(3)
	zero := int64(0)
	labels := map[string]string{"app": "db"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			ServiceName:         "db",
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: v1.PodSpec{
					TerminationGracePeriodSeconds: &zero,
					DNSPolicy:                     v1.DNSDefault,
					Containers: []v1.Container{{
						Name: "db", Image: busyboxImage, ImagePullPolicy: v1.PullIfNotPresent,
						// Keep the first identity the volume saw: a replica that
						// got another replica's volume would print a foreign name.
						Command:      []string{"sh", "-c", "test -f /data/id || hostname > /data/id; sync; echo id=$(cat /data/id); touch /tmp/ready; sleep 3600"},
						VolumeMounts: []v1.VolumeMount{{Name: "data", MountPath: "/data"}},
						ReadinessProbe: &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"cat", "/tmp/ready"}}},
							PeriodSeconds: 1},
					}},
				},
			},
			VolumeClaimTemplates: []v1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: v1.PersistentVolumeClaimSpec{
					AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
					Resources:   v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("32Mi")}},
				},
			}},
		},
	}
	if _, err := env.kube.AppsV1().StatefulSets(ns).Create(context.Background(), sts, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create StatefulSet: %v", err)
	}
	waitFor(t, "3 ready replicas"+warningsLater(ns), 2*time.Minute, func(ctx context.Context) (bool, error) {
		s, err := env.kube.AppsV1().StatefulSets(ns).Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return s.Status.ReadyReplicas == replicas, nil
	})
	handles := map[string]string{}
	for _, pod := range []string{"db-0", "db-1", "db-2"} {
		pv := boundPV(t, ns, "data-"+pod)
		if other, dup := handles[pv.Spec.CSI.VolumeHandle]; dup {
			t.Errorf("%s and %s share volume %s", pod, other, pv.Spec.CSI.VolumeHandle)
		}
		handles[pv.Spec.CSI.VolumeHandle] = pod
		if got := strings.TrimSpace(podLogs(t, ns, pod)); got != "id="+pod {
			t.Errorf("pod %s printed %q, want id=%s", pod, got, pod)
		}
	}
}
