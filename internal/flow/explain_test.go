package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/internal/steps"
)

// recorded is the story of claim ns/data as csi-hub records it (plus the node
// steps from the driver and a step of another claim), in recording order.
func recorded() []steps.Step {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	pvc, pv, va, vol := "PersistentVolumeClaim ns/data", "PersistentVolume pvc-1", "VolumeAttachment csi-abc", steps.VolumeObject("vol-1")
	list := []steps.Step{
		{Kind: steps.Seen, Controller: byUser, Object: pvc, Action: "claim-created", Detail: `asks for 1Gi of StorageClass "csi-hub"`},
		{Kind: steps.Seen, Controller: byScheduler, Object: pvc, Action: "node-selected", Detail: "the Pod goes to node n1"},
		{Kind: steps.Trigger, Controller: "provisioner", Object: pvc, Action: "PVC ns/data asks for 1Gi: creating volume pvc-1"},
		{Kind: steps.CSI, Controller: "provisioner", Object: pvc, Action: "CreateVolume", Result: "OK", Duration: 12 * time.Millisecond, Request: `{"name":"pvc-1"}`},
		{Kind: steps.Seen, Controller: byUser, Object: "PersistentVolumeClaim ns/other", Action: "claim-created"},
		{Kind: steps.Write, Controller: "provisioner", Object: pvc, Action: "create persistentvolumes", Result: "201"},
		{Kind: steps.Seen, Controller: "provisioner", Object: pv, Action: "pv-created", Related: []string{pvc, vol}},
		{Kind: steps.Event, Controller: "provisioner", Object: pvc, Action: "ProvisioningSucceeded", Result: "Normal", Detail: "Successfully provisioned volume pvc-1"},
		{Kind: steps.Seen, Controller: byKCM, Object: pvc, Action: "claim-bound", Detail: "bound to PV pvc-1", Related: []string{pv}},
		{Kind: steps.Seen, Controller: byKCM, Object: va, Action: "va-created", Related: []string{pv}},
		{Kind: steps.CSI, Controller: "attacher", Object: va, Action: "ControllerPublishVolume", Result: "OK"},
		{Kind: steps.Seen, Controller: "attacher", Object: va, Action: "va-attached", Related: []string{pv}},
		{Kind: steps.Node, Controller: "kubelet", Object: vol, Action: "NodeStageVolume", Result: "OK"},
		{Kind: steps.Node, Controller: "kubelet", Object: vol, Action: "NodePublishVolume", Result: "OK"},
		{Kind: steps.Event, Controller: "provisioner", Object: pv, Action: "VolumeFailedDelete", Result: "Warning",
			Detail: "rpc error: code = FailedPrecondition desc = volume vol-1 is still attached to node n1"},
		{Kind: steps.Event, Controller: "provisioner", Object: "PersistentVolumeClaim ns/other", Action: "ProvisioningFailed", Result: "Warning", Detail: "pool full"},
	}
	for i := range list {
		list[i].Seq = uint64(i + 1)
		list[i].Time = t0.Add(time.Duration(i) * time.Second)
	}
	return list
}

func TestStoryFollowsTheClaimThroughPVAttachmentAndNode(t *testing.T) {
	var out bytes.Buffer
	n := WriteStory(&out, recorded(), "PersistentVolumeClaim ns/data", true)
	text := out.String()
	if n != 14 {
		t.Fatalf("%d steps in the story, want 14 (every step but the other claim's two):\n%s", n, text)
	}
	if strings.Contains(text, "ns/other") || strings.Contains(text, "pool full") {
		t.Fatalf("the other claim's steps are in the story:\n%s", text)
	}
	order := []string{" 1. ", "user: PVC created", "kube-scheduler: Node selected", "called CreateVolume on the driver -> OK in 12ms",
		"kube-controller-manager: Bound", "called ControllerPublishVolume", "attacher: Attached",
		"the kubelet called NodeStageVolume", "the kubelet called NodePublishVolume", "14. "}
	last := -1
	for _, w := range order {
		i := strings.Index(text, w)
		if i < 0 || i < last {
			t.Fatalf("%q missing or out of order in:\n%s", w, text)
		}
		last = i
	}
	if !strings.Contains(text, "this is the normal wait for the detach, not a failure") || strings.Contains(text, "FAILED: Warning event VolumeFailedDelete") {
		t.Fatalf("the still-attached VolumeFailedDelete is not explained as a wait:\n%s", text)
	}
	flat := strings.Join(strings.Fields(text), " ")
	if c := strings.Count(flat, "The driver answers with a volume ID"); c != 1 {
		t.Fatalf("CreateVolume's paragraph appears %d times, want once:\n%s", c, text)
	}
	if !strings.Contains(flat, "must not be deleted while a node may still write to it") {
		t.Fatalf("no newcomer paragraph for the wait:\n%s", text)
	}
}

func TestStoryOfAPVIsItsClaimsStory(t *testing.T) {
	var a, b bytes.Buffer
	WriteStory(&a, recorded(), "PersistentVolumeClaim ns/data", false)
	WriteStory(&b, recorded(), "PersistentVolume pvc-1", false)
	if a.String() != b.String() || a.Len() == 0 {
		t.Fatalf("a PV's story differs from its claim's:\n%s\n---\n%s", a.String(), b.String())
	}
}

func TestFailedAndWait(t *testing.T) {
	cases := []struct {
		s            steps.Step
		failed, wait bool
	}{
		{steps.Step{Kind: steps.CSI, Result: "OK"}, false, false},
		{steps.Step{Kind: steps.CSI, Result: "ResourceExhausted"}, true, false},
		{steps.Step{Kind: steps.Node, Result: "Internal"}, true, false},
		{steps.Step{Kind: steps.Write, Result: "201"}, false, false},
		{steps.Step{Kind: steps.Write, Result: "409"}, true, false},
		{steps.Step{Kind: steps.Write, Result: "dial tcp: refused"}, true, false},
		{steps.Step{Kind: steps.Event, Result: "Warning", Action: "ProvisioningFailed"}, true, false},
		{steps.Step{Kind: steps.Event, Result: "Warning", Action: "VolumeFailedDelete", Detail: "volume is still Attached to node"}, false, true},
		{steps.Step{Kind: steps.Event, Result: "Warning", Action: "VolumeFailedDelete", Detail: "backend down"}, true, false},
		{steps.Step{Kind: steps.Event, Result: "Normal", Action: "VolumeDelete", Detail: "persistentvolume pv1 is still attached to node n1, waiting for detach"}, false, true},
		{steps.Step{Kind: steps.Event, Result: "Normal", Action: "ProvisioningSucceeded"}, false, false},
	}
	for _, c := range cases {
		if Failed(c.s) != c.failed || IsWait(c.s) != c.wait {
			t.Errorf("%+v: failed %v wait %v, want %v %v", c.s, Failed(c.s), IsWait(c.s), c.failed, c.wait)
		}
	}
}

func TestEveryKindHasWords(t *testing.T) {
	for k, v := range Kinds {
		if len(v.Why) < 40 {
			t.Errorf("%s: paragraph %q is too short to teach anything", k, v.Why)
		}
		if !strings.HasSuffix(k, ":*") && v.Label == "" {
			t.Errorf("%s has no label", k)
		}
	}
	for _, k := range []string{"csi:CreateVolume", "csi:ControllerPublishVolume", "node:NodeStageVolume", "node:NodePublishVolume",
		"node:NodeUnpublishVolume", "node:NodeUnstageVolume", "node:NodeExpandVolume", "seen:claim-bound", "seen:pv-created",
		"seen:va-created", "seen:va-attached", "csi:CreateSnapshot", "csi:ControllerExpandVolume", "event:still-attached"} {
		if _, ok := Kinds[k]; !ok {
			t.Errorf("no words for %s", k)
		}
	}
}

func TestParseRef(t *testing.T) {
	good := map[string]Ref{
		"pvc/ns/data":             {"PersistentVolumeClaim", "ns", "data"},
		"PersistentVolume/pvc-1":  {"PersistentVolume", "", "pvc-1"},
		"volumeattachment/csi-1":  {"VolumeAttachment", "", "csi-1"},
		"volumesnapshot/ns/snap1": {"VolumeSnapshot", "ns", "snap1"},
	}
	for in, want := range good {
		if got, err := ParseRef(in); err != nil || got != want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"pvc/data", "pv/ns/x", "pod/ns/x", "pvc//x", ""} {
		if _, err := ParseRef(in); err == nil {
			t.Errorf("ParseRef(%q) accepted", in)
		}
	}
}

func serveSteps(t *testing.T, list []steps.Step) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/steps" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(list)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestExplainReadsHubAndNodeSteps(t *testing.T) {
	var hub, node []steps.Step
	for _, s := range recorded() {
		if s.Kind == steps.Node {
			node = append(node, s)
		} else {
			hub = append(hub, s)
		}
	}
	ref, _ := ParseRef("pvc/ns/data")
	var out bytes.Buffer
	if err := Explain(context.Background(), &out, ref, ExplainOptions{Server: serveSteps(t, hub)}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "NodeStageVolume on the driver") || !strings.Contains(out.String(), "Not seen here: the kubelet's NodeStageVolume") {
		t.Fatalf("without the node endpoint, explain must say the node steps are not seen:\n%s", out.String())
	}
	out.Reset()
	if err := Explain(context.Background(), &out, ref, ExplainOptions{Server: serveSteps(t, hub), Nodes: []string{serveSteps(t, node)}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "the kubelet called NodePublishVolume") || strings.Contains(out.String(), "Not seen here") {
		t.Fatalf("node steps not merged:\n%s", out.String())
	}
	// Nothing recorded and no API: an error, not an empty story.
	ref, _ = ParseRef("pvc/ns/unknown")
	if err := Explain(context.Background(), io.Discard, ref, ExplainOptions{Server: serveSteps(t, hub)}); err == nil {
		t.Fatal("explain of an unknown claim without an API succeeded")
	}
}

func TestMainExitCodes(t *testing.T) {
	var out, errb bytes.Buffer
	if c := Main([]string{"pvc/justname"}, &out, &errb); c != 2 || !strings.Contains(errb.String(), "pvc/NAMESPACE/NAME") {
		t.Fatalf("bad ref: exit %d, stderr %q", c, errb.String())
	}
	errb.Reset()
	if c := Main([]string{"--no-api", "--server", serveSteps(t, recorded()), "pv/pvc-1"}, &out, &errb); c != 0 ||
		!strings.Contains(out.String(), "CreateVolume") {
		t.Fatalf("exit %d, stdout %q, stderr %q", c, out.String(), errb.String())
	}
}

func TestHandlerServesThePageAndKinds(t *testing.T) {
	h := Handler()
	for path, want := range map[string]string{"/flow/": "<title>csi-hub flow", "/flow/flow.js": "function stepKey", "/flow/kinds.json": `"node:NodeStageVolume"`} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, rec.Code, want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/flow?node=http://x:9810", nil))
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/flow/?node=http://x:9810" {
		t.Errorf("GET /flow: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
}
