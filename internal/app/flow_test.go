package app

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/internal/flow"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/test/cluster"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// On a real API server: the hub records kube-controller-manager's binding
// (read off its informers) between its own steps, and `csi-hub explain` of a
// claim whose steps have rolled out of a small ring tells the story from what
// the API still shows.
func TestFlowStepsAndExplainAfterTheRingRolledOver(t *testing.T) {
	c := cluster.Shared(t)
	_, sock := startDriver(t, fakedriver.Options{})
	opts := hubtest.Options(sock)
	opts.StepBuffer = 40
	r := startHub(t, c.RESTConfig(), opts)
	eventually(t, time.Minute, "hub ready", func() (bool, string) {
		code, body := get(r.hub, "/readyz")
		return code == 200, body
	})
	kube := r.hub.Kube
	ns := newNamespace(t, c)
	sc := storageClass(t, kube, fakedriver.DefaultDriverName, nil)
	createPVC(t, kube, ns, "first", sc)
	pvc := waitBound(t, kube, ns, "first", time.Minute)
	claim := "PersistentVolumeClaim " + ns + "/first"

	var keys []string
	eventually(t, 30*time.Second, "the claim's story with kcm's binding", func() (bool, string) {
		keys = keys[:0]
		for _, s := range flow.Story(r.hub.Steps.Recent(0), claim) {
			keys = append(keys, flow.Key(s))
		}
		return inOrder(keys, "seen:claim-created", "csi:CreateVolume", "seen:pv-created", "seen:claim-bound"), fmt.Sprint(keys)
	})

	// Roll the ring over: every further claim brings ~10 steps.
	for i := range 6 {
		createPVC(t, kube, ns, fmt.Sprintf("more-%d", i), sc)
	}
	for i := range 6 {
		waitBound(t, kube, ns, fmt.Sprintf("more-%d", i), time.Minute)
	}
	eventually(t, 30*time.Second, "the claim's first steps rolled out of the ring", func() (bool, string) {
		for _, s := range flow.Story(r.hub.Steps.Recent(0), claim) {
			if s.Kind == steps.CSI {
				return false, "CreateVolume still kept"
			}
		}
		return true, ""
	})

	srv := httptest.NewServer(r.hub.Handler())
	defer srv.Close()
	if code, body := get(r.hub, "/flow/"); code != 200 || !strings.Contains(body, "csi-hub flow") {
		t.Fatalf("GET /flow/ on the hub: %d %.200s", code, body)
	}
	var out bytes.Buffer
	ref, _ := flow.ParseRef("pvc/" + ns + "/first")
	if err := flow.Explain(context.Background(), &out, ref, flow.ExplainOptions{Server: srv.URL, Kube: kube}); err != nil {
		t.Fatalf("explain: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Logf("csi-hub explain pvc/%s/first:\n%s", ns, text)
	for _, want := range []string{
		"What the API still shows:",
		" 1. ",
		"PersistentVolumeClaim " + ns + "/first created",
		"PV " + pvc.Spec.VolumeName + " created by the provisioner of " + fakedriver.DefaultDriverName,
		"kube-controller-manager bound the claim to PV " + pvc.Spec.VolumeName,
		"Normal event ProvisioningSucceeded on PersistentVolumeClaim first",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("explain output lacks %q", want)
		}
	}
	// The PV's own story from the API names the same claim.
	out.Reset()
	ref, _ = flow.ParseRef("pv/" + pvc.Spec.VolumeName)
	if err := flow.Explain(context.Background(), &out, ref, flow.ExplainOptions{Server: srv.URL, Kube: kube}); err != nil ||
		!strings.Contains(out.String(), "PersistentVolumeClaim "+ns+"/first created") {
		t.Fatalf("explain pv: %v\n%s", err, out.String())
	}
	// An object that does not exist: an error naming it.
	ref, _ = flow.ParseRef("pvc/" + ns + "/never")
	if err := flow.Explain(context.Background(), &out, ref, flow.ExplainOptions{Server: srv.URL, Kube: kube}); err == nil ||
		!strings.Contains(err.Error(), "never") {
		t.Fatalf("explain of a missing claim: %v", err)
	}
}

// inOrder: want appear in keys in this order (others may come between).
func inOrder(keys []string, want ...string) bool {
	i := 0
	for _, k := range keys {
		if i < len(want) && k == want[i] {
			i++
		}
	}
	return i == len(want)
}
