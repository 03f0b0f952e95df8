package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/csi-hub/csi-hub/test/cluster"
)

const v1Content = `{"apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshotContent",
 "metadata": {"name": "c", "annotations": {"keep": "me"}},
 "spec": {"driver": "d"},
 "status": {"readyToUse": true, "creationTime": 1796281705884535078, "volumeSnapshotInfoList": [
  {"volumeHandle": "vol-a", "snapshotHandle": "snap-a", "readyToUse": true, "restoreSize": 314572800, "creationTime": 1796281705884535078},
  {"volumeHandle": "vol-b", "snapshotHandle": "snap-b", "readyToUse": true, "restoreSize": 314572800, "creationTime": 1796281705884535079}]}}`

func parse(t *testing.T, s string) map[string]any {
	t.Helper()
	var obj map[string]any
	if err := decode([]byte(s), &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

// TestConvertRoundTrip: v1 -> v1beta1 gives the handle pairs (what a v1beta1
// client such as the v1.34 e2e suite reads); back to v1 gives the very same
// object, int64 nanosecond times included; v1 <-> v1beta2 changes only apiVersion.
func TestConvertRoundTrip(t *testing.T) {
	obj := parse(t, v1Content)
	if err := convert(obj, "groupsnapshot.storage.k8s.io/v1beta1"); err != nil {
		t.Fatal(err)
	}
	status := obj["status"].(map[string]any)
	want := []any{map[string]any{"volumeHandle": "vol-a", "snapshotHandle": "snap-a"}, map[string]any{"volumeHandle": "vol-b", "snapshotHandle": "snap-b"}}
	if !reflect.DeepEqual(status["volumeSnapshotHandlePairList"], want) || status["volumeSnapshotInfoList"] != nil {
		t.Errorf("v1beta1 status: %v", status)
	}
	if obj["apiVersion"] != "groupsnapshot.storage.k8s.io/v1beta1" {
		t.Errorf("apiVersion %v", obj["apiVersion"])
	}
	if err := convert(obj, "groupsnapshot.storage.k8s.io/v1"); err != nil {
		t.Fatal(err)
	}
	if orig := parse(t, v1Content); !reflect.DeepEqual(obj, orig) {
		a, _ := json.Marshal(obj)
		t.Errorf("round trip changed the object:\n got %s\nwant %s", a, v1Content)
	}
	if err := convert(obj, "groupsnapshot.storage.k8s.io/v1beta2"); err != nil {
		t.Fatal(err)
	}
	obj["apiVersion"] = "groupsnapshot.storage.k8s.io/v1"
	if !reflect.DeepEqual(obj, parse(t, v1Content)) {
		t.Error("v1 -> v1beta2 changed more than apiVersion")
	}
}

// TestConvertV1beta1Written: an object written as v1beta1 (no annotation)
// gets its pairs as volumeSnapshotInfoList; no annotations appear.
func TestConvertV1beta1Written(t *testing.T) {
	obj := parse(t, `{"apiVersion": "groupsnapshot.storage.k8s.io/v1beta1", "kind": "VolumeGroupSnapshotContent", "metadata": {"name": "c"},
	 "status": {"volumeSnapshotHandlePairList": [{"volumeHandle": "v", "snapshotHandle": "s"}]}}`)
	if err := convert(obj, "groupsnapshot.storage.k8s.io/v1beta2"); err != nil {
		t.Fatal(err)
	}
	want := parse(t, `{"apiVersion": "groupsnapshot.storage.k8s.io/v1beta2", "kind": "VolumeGroupSnapshotContent", "metadata": {"name": "c"},
	 "status": {"volumeSnapshotInfoList": [{"volumeHandle": "v", "snapshotHandle": "s"}]}}`)
	if !reflect.DeepEqual(obj, want) {
		t.Errorf("got %v", obj)
	}
}

func TestConvertRefuses(t *testing.T) {
	for _, tc := range []struct{ obj, to, want string }{
		{`{"apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshot"}`, "groupsnapshot.storage.k8s.io/v1beta1", "unexpected kind"},
		{`{"apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshotContent"}`, "groupsnapshot.storage.k8s.io/v1alpha1", "unknown version"},
		{`{"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshotContent"}`, "groupsnapshot.storage.k8s.io/v1beta1", "not of group"},
		{`{"apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshotContent", "status": {"volumeSnapshotInfoList": "x"}}`, "groupsnapshot.storage.k8s.io/v1beta1", "not a list"},
	} {
		if err := convert(parse(t, tc.obj), tc.to); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s to %s: %v, want an error with %q", tc.obj, tc.to, err, tc.want)
		}
	}
}

// TestHandleFailure: a failed conversion is a Failure result with the object's name.
func TestHandleFailure(t *testing.T) {
	body := `{"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "request": {"uid": "u1",
	 "desiredAPIVersion": "groupsnapshot.storage.k8s.io/v1alpha1", "objects": [` + v1Content + `]}}`
	rec := httptest.NewRecorder()
	handle(rec, httptest.NewRequest(http.MethodPost, "/convert", strings.NewReader(body)))
	var out review
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || out.Response.UID != "u1" || out.Response.Result.Status != "Failure" || !strings.Contains(out.Response.Result.Message, "(c)") {
		t.Errorf("response: %s", rec.Body)
	}
}

var contentGVR = schema.GroupVersionResource{Group: group, Resource: "volumegroupsnapshotcontents"}

// TestThroughAPIServer: the v8.7 CRDs on a real kube-apiserver, first as
// shipped (strategy None: a v1beta1 read shows no members, the reason for
// this webhook), then with the content CRD pointed at this webhook: v1beta1
// reads give volumeSnapshotHandlePairList, v1 reads and a v1beta1 write
// keep volumeSnapshotInfoList whole.
func TestThroughAPIServer(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.InstallSnapshotCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(c.RESTConfig())
	v1 := dyn.Resource(contentGVR.GroupResource().WithVersion("v1"))
	v1beta1 := dyn.Resource(contentGVR.GroupResource().WithVersion("v1beta1"))

	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON([]byte(`{"apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshotContent",
	 "metadata": {"name": "probe"}, "spec": {"deletionPolicy": "Retain", "driver": "probe.invalid",
	 "source": {"groupSnapshotHandles": {"volumeGroupSnapshotHandle": "g", "volumeSnapshotHandles": ["snap-a"]}},
	 "volumeGroupSnapshotRef": {"name": "none", "namespace": "none"}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := v1.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	status := []byte(`{"status": {"readyToUse": true, "volumeGroupSnapshotHandle": "g", "volumeSnapshotInfoList": [
	 {"volumeHandle": "vol-a", "snapshotHandle": "snap-a", "readyToUse": true, "restoreSize": 314572800, "creationTime": 1796281705884535078}]}}`)
	if _, err := v1.Patch(ctx, "probe", "application/merge-patch+json", status, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	pairs := func() (any, error) {
		got, err := v1beta1.Get(ctx, "probe", metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		p, _, _ := unstructured.NestedFieldNoCopy(got.Object, "status", "volumeSnapshotHandlePairList")
		return p, nil
	}
	if p, err := pairs(); err != nil || p != nil {
		t.Fatalf("strategy None: v1beta1 read gave pairs %v, %v; want none (else this webhook is not needed)", p, err)
	}

	// The webhook over TLS, as up.sh runs it, and the CRD pointed at it.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(handle))
	srv.StartTLS()
	defer srv.Close()
	caBundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	crds := apiextensionsclient.NewForConfigOrDie(c.RESTConfig()).ApiextensionsV1().CustomResourceDefinitions()
	crd, err := crds.Get(ctx, "volumegroupsnapshotcontents."+group, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := srv.URL + "/convert"
	crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{Strategy: apiextensionsv1.WebhookConverter,
		Webhook: &apiextensionsv1.WebhookConversion{ConversionReviewVersions: []string{"v1"},
			ClientConfig: &apiextensionsv1.WebhookClientConfig{URL: &url, CABundle: caBundle}}}
	if _, err := crds.Update(ctx, crd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []any{map[string]any{"volumeHandle": "vol-a", "snapshotHandle": "snap-a"}}
	var last any
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		p, err := pairs()
		last = p
		if err != nil {
			last = err
		}
		return reflect.DeepEqual(p, want), nil
	}); err != nil {
		t.Fatalf("webhook: v1beta1 read gave %v, want pairs %v", last, want)
	}

	// A v1beta1 client updates the object (the annotation travels with it);
	// v1 still has every field of every member.
	got, err := v1beta1.Get(ctx, "probe", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.SetLabels(map[string]string{"touched": "v1beta1"})
	if _, err := v1beta1.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	back, err := v1.Get(ctx, "probe", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list, _, _ := unstructured.NestedSlice(back.Object, "status", "volumeSnapshotInfoList")
	b, _ := json.Marshal(list)
	if !bytes.Equal(b, []byte(`[{"creationTime":1796281705884535078,"readyToUse":true,"restoreSize":314572800,"snapshotHandle":"snap-a","volumeHandle":"vol-a"}]`)) ||
		back.GetLabels()["touched"] != "v1beta1" || back.GetAnnotations()[infoListAnnotation] != "" {
		t.Errorf("v1 after a v1beta1 update: list %s, labels %v, annotations %v", b, back.GetLabels(), back.GetAnnotations())
	}
	if _, err := v1.List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("v1 list through the webhook: %v", err)
	}
}
