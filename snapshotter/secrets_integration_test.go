package snapshotter_test

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/internal/testutil"
	"github.com/csi-hub/csi-hub/snapshotter"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// TestSecrets: the class's snapshotter secret (copied onto the content by the
// snapshot-controller) reaches CreateSnapshot and DeleteSnapshot, and its
// values never appear in the logs (at -v=5, where every CSI request is
// logged), the step record or the events.
func TestSecrets(t *testing.T) {
	const password = "p4ss-w0rd-9f8e7d" // distinctive, so any leak is found
	logs := testutil.CaptureKlog(t, 5)
	e := newEnv(t, cluster.Shared(t), "secret", fakedriver.Options{})
	e.startHub(testConfig())
	e.sourcePVC("data")
	secretData := map[string]string{"username": "admin", "password": password}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "snap-creds"}, StringData: secretData}
	if _, err := e.c.Client.CoreV1().Secrets(e.ns).Create(e.ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	class := e.class("secret", snapv1.VolumeSnapshotContentDelete, map[string]string{
		snapshotter.ParamSnapshotterSecretName:      "snap-creds",
		snapshotter.ParamSnapshotterSecretNamespace: "${volumesnapshot.namespace}",
	})
	e.snapshot("snap", "data", class)
	_, content := e.waitReady("snap", time.Minute)

	if got := content.Annotations[snapshotter.AnnDeletionSecretName]; got != "snap-creds" {
		t.Errorf("content annotation %s = %q (snapshot-controller's copy of the class secret)", snapshotter.AnnDeletionSecretName, got)
	}
	create, ok := fakedriver.LastRequest[*csi.CreateSnapshotRequest](e.driver)
	if !ok || !maps.Equal(create.Secrets, secretData) {
		t.Errorf("CreateSnapshot secrets = %v, want the secret's data", create.GetSecrets())
	}
	if len(create.Parameters) != 0 {
		t.Errorf("CreateSnapshot parameters = %v; the secret keys must not reach the driver", create.Parameters)
	}

	if err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Delete(e.ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitContentGone(content.Name, time.Minute)
	del, ok := fakedriver.LastRequest[*csi.DeleteSnapshotRequest](e.driver)
	if !ok || !maps.Equal(del.Secrets, secretData) {
		t.Errorf("DeleteSnapshot secrets = %v, want the secret's data", del.GetSecrets())
	}

	// The capture worked (the CSI calls were logged) and holds no secret.
	if logs.Count("CreateSnapshot") == 0 {
		t.Fatal("klog capture saw no CreateSnapshot: the leak check below would prove nothing")
	}
	if n := logs.Count(password); n != 0 {
		t.Errorf("the secret's value appears %d times in the logs", n)
	}
	for _, s := range e.hub.Steps.Recent(0) {
		if strings.Contains(s.Detail, password) || strings.Contains(s.Action, password) {
			t.Errorf("the secret's value appears in step %+v", s)
		}
	}
	for _, ev := range e.events(content.Name) {
		if strings.Contains(ev, password) {
			t.Errorf("the secret's value appears in event %q", ev)
		}
	}
}

// TestMissingSecret: a class naming a secret that does not exist fails with
// a Warning event naming the secret (never its content), sends nothing to the
// driver, and the VolumeSnapshot can still be deleted.
func TestMissingSecret(t *testing.T) {
	e := newEnv(t, cluster.Shared(t), "nosecret", fakedriver.Options{})
	e.startHub(testConfig())
	e.sourcePVC("data")
	class := e.class("secret", snapv1.VolumeSnapshotContentDelete, map[string]string{
		snapshotter.ParamSnapshotterSecretName:      "absent",
		snapshotter.ParamSnapshotterSecretNamespace: "${volumesnapshot.namespace}",
	})
	e.snapshot("snap", "data", class)
	contentName := e.boundContent("snap")
	e.poll(30*time.Second, "a Warning event naming the secret", func() (bool, error) {
		for _, ev := range e.events(contentName) {
			if strings.HasPrefix(ev, "Warning SnapshotCreationFailed") && strings.Contains(ev, e.ns+"/absent") {
				return true, nil
			}
		}
		return false, nil
	})
	if n := e.driver.Calls("CreateSnapshot"); n != 0 {
		t.Errorf("CreateSnapshot called %d times without its secret", n)
	}
	if _, ok := e.content(contentName).Annotations[snapshotter.AnnBeingCreated]; ok {
		t.Error("being-created annotation set although no call was sent")
	}
	if err := e.snaps.SnapshotV1().VolumeSnapshots(e.ns).Delete(e.ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitContentGone(contentName, time.Minute)
}
