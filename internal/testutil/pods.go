package testutil

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// InUsePod is the Pod of the in-use expansion benchmark (test/bench
// InUsePods10k) and of the slim Pod informer's memory test: two containers
// with env, probes and resources, a claim "data-<name>", a ConfigMap and a
// projected token volume, the shape of a typical workload Pod.
func InUsePod(i int) *v1.Pod {
	name := fmt.Sprintf("web-%05d", i)
	env := []v1.EnvVar{{Name: "POD_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
	for k := range 8 {
		env = append(env, v1.EnvVar{Name: fmt.Sprintf("SETTING_%d", k), Value: strings.Repeat("v", 24)})
	}
	res := v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   v1.ResourceList{v1.ResourceMemory: resource.MustParse("256Mi")},
	}
	probe := &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 10}
	container := func(n, image string, port int32) v1.Container {
		return v1.Container{Name: n, Image: image, Env: env, Resources: res, LivenessProbe: probe, ReadinessProbe: probe,
			Ports:        []v1.ContainerPort{{Name: n, ContainerPort: port}},
			VolumeMounts: []v1.VolumeMount{{Name: "data", MountPath: "/data"}, {Name: "config", MountPath: "/etc/app"}}}
	}
	expiry := int64(3607)
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels:      map[string]string{"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web", "statefulset.kubernetes.io/pod-name": name},
			Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "checksum/config": strings.Repeat("a", 64)}},
		Spec: v1.PodSpec{
			SchedulerName: "bench-no-scheduler", // stays Pending: no node in this cluster
			Containers:    []v1.Container{container("web", "registry.example/web:1.2.3", 8080), container("proxy", "registry.example/proxy:4.5.6", 9090)},
			Volumes: []v1.Volume{
				{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "data-" + name}}},
				{Name: "config", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "web-config"}}}},
				{Name: "token", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
					{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &expiry}},
					{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"},
						Items: []v1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				}}}},
			},
		},
	}
}
