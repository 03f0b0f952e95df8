package steps

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
)

func TestDescribeAPIPaths(t *testing.T) {
	cases := []struct{ method, path, verb, resource, name string }{
		{"POST", "/api/v1/persistentvolumes", "create", "persistentvolumes", ""},
		{"PUT", "/api/v1/namespaces/ns/persistentvolumeclaims/data/status", "update", "persistentvolumeclaims/status", "data"},
		{"PATCH", "/apis/storage.k8s.io/v1/volumeattachments/csi-123", "patch", "volumeattachments", "csi-123"},
		{"DELETE", "/api/v1/persistentvolumes/pvc-1", "delete", "persistentvolumes", "pvc-1"},
		{"POST", "/api/v1/namespaces/ns/events", "create", "events", ""},
		{"PATCH", "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/c1/status", "patch", "volumesnapshotcontents/status", "c1"},
	}
	for _, c := range cases {
		verb, resource, name := describe(c.method, c.path)
		if verb != c.verb || resource != c.resource || name != c.name {
			t.Errorf("describe(%s %s) = %q %q %q, want %q %q %q", c.method, c.path, verb, resource, name, c.verb, c.resource, c.name)
		}
	}
}

func TestRingKeepsTheNewestAndAttributesContext(t *testing.T) {
	r := NewRecorder(3)
	ctx := WithObject(context.Background(), "provisioner", "PersistentVolumeClaim ns/a")
	for _, a := range []string{"1", "2", "3", "4", "5"} {
		r.Record(ctx, Step{Kind: Write, Action: "create persistentvolumes", Detail: a})
	}
	got := r.Recent(0)
	if len(got) != 3 || got[0].Detail != "3" || got[2].Detail != "5" || got[2].Seq != 5 {
		t.Fatalf("Recent(0) = %+v, want the last three steps, oldest first", got)
	}
	if got[0].Controller != "provisioner" || got[0].Object != "PersistentVolumeClaim ns/a" {
		t.Fatalf("step not attributed to the context's object: %+v", got[0])
	}
	if after := r.Recent(4); len(after) != 1 || after[0].Seq != 5 {
		t.Fatalf("Recent(4) = %+v, want only step 5", after)
	}
	if w := r.Writes()["create persistentvolumes"]; w != 5 {
		t.Fatalf("write count %d, want 5 (counts survive the ring)", w)
	}
}

func TestTransportRecordsOnlyWrites(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) }))
	defer srv.Close()
	r := NewRecorder(10)
	client := &http.Client{Transport: r.WrapTransport(http.DefaultTransport)}
	ctx := WithObject(context.Background(), "attacher", "VolumeAttachment va1")
	for _, m := range []string{"GET", "PATCH"} {
		req, _ := http.NewRequestWithContext(ctx, m, srv.URL+"/apis/storage.k8s.io/v1/volumeattachments/va1/status", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	got := r.Recent(0)
	if len(got) != 1 || got[0].Action != "patch volumeattachments/status" || got[0].Result != "201" || got[0].Object != "VolumeAttachment va1" {
		t.Fatalf("steps = %+v, want one patch step of va1", got)
	}
}

func TestEventsAndHandler(t *testing.T) {
	r := NewRecorder(10)
	fake := record.NewFakeRecorder(10)
	rec := r.EventRecorder(fake)
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data"}}
	rec.Eventf(pvc, corev1.EventTypeWarning, "ProvisioningFailed", "failed to provision volume: %s", "pool full")
	if e := <-fake.Events; e != "Warning ProvisioningFailed failed to provision volume: pool full" {
		t.Fatalf("event not passed on: %q", e)
	}
	rw := httptest.NewRecorder()
	r.Handler().ServeHTTP(rw, httptest.NewRequest("GET", "/steps", nil))
	var got []Step
	if err := json.Unmarshal(rw.Body.Bytes(), &got); err != nil {
		t.Fatalf("/steps is not JSON: %v: %s", err, rw.Body.String())
	}
	if len(got) != 1 || got[0].Kind != Event || got[0].Object != "PersistentVolumeClaim ns/data" ||
		got[0].Action != "ProvisioningFailed" || got[0].Result != "Warning" || got[0].Detail != "failed to provision volume: pool full" {
		t.Fatalf("/steps = %+v", got)
	}
}
