package flow

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/csi-hub/csi-hub/internal/steps"
	"github.com/csi-hub/csi-hub/internal/testutil"
)

// The page in headless Chromium on recorded steps: the hub's steps from its
// own server, the node's from another origin (as from the driver's
// --steps-endpoint). The real-cluster version of this test is test/e2e's
// FlowPage; this one pins the page's logic (grouping, order, detail, red
// failures, the wait) without a cluster. FLOW_SCREENSHOT=path saves the page.
func TestPageDrawsTheStoryInHeadlessChromium(t *testing.T) {
	testutil.SkipUnit(t, "headless Chromium; it runs in make test (go test ./internal/flow/)")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		var err error
		if chromium, err = exec.LookPath("chromium"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("chromium not installed (hack/install-deps.sh installs it): %v", err)
			}
			t.Skipf("SKIPPING the page test: chromium not installed (hack/install-deps.sh installs it): %v", err)
		}
	}
	// Chromium may still write its profile while t.TempDir's cleanup runs.
	profile, err := os.MkdirTemp("", "flow-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(profile)
	hubRec, nodeRec := steps.NewRecorder(100), steps.NewRecorder(100)
	base := time.Now().Add(-time.Minute)
	for i, s := range demoStory() {
		s.Seq, s.Time = 0, base.Add(time.Duration(i)*700*time.Millisecond)
		if s.Kind == steps.Node {
			nodeRec.Record(context.Background(), s)
		} else {
			hubRec.Record(context.Background(), s)
		}
	}
	hubMux := http.NewServeMux()
	hubMux.Handle("/steps", hubRec.Handler())
	hubMux.Handle("/flow/", Handler())
	hub := httptest.NewServer(hubMux)
	defer hub.Close()
	node := httptest.NewServer(nodeRec.Handler())
	defer node.Close()

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(profile), chromedp.WindowSize(1500, 1900))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()

	claim := "PersistentVolumeClaim demo/data"
	load := func(node, story string) {
		t.Helper()
		u := hub.URL + "/flow/"
		if node != "" {
			u += "?node=" + url.QueryEscape(node)
		}
		if err := chromedp.Run(ctx, chromedp.Navigate(u+"#story="+url.PathEscape(story))); err != nil {
			t.Fatalf("load %s: %v", u, err)
		}
	}
	keys := func(want int) []string {
		t.Helper()
		var k []string
		for range 100 {
			if err := chromedp.Run(ctx, chromedp.Evaluate(`[...document.querySelectorAll("#lane .step")].map(e => e.dataset.key)`, &k)); err != nil {
				t.Fatal(err)
			}
			if len(k) >= want {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		return k
	}

	// Without the node's endpoint: the hub's steps, and a note on what is not seen.
	load("", claim)
	k := keys(18)
	if got := strings.Join(k, " "); !strings.Contains(got, "unseen") || strings.Contains(got, "node:NodeStageVolume") {
		t.Fatalf("without ?node= the lane must say which node steps it cannot see: %v", k)
	}

	// With it: the whole story in order, one lane.
	load(node.URL, claim)
	k = keys(23)
	want := []string{"seen:claim-created", "seen:node-selected", "csi:CreateVolume", "seen:pv-created", "seen:claim-bound",
		"seen:va-created", "csi:ControllerPublishVolume", "seen:va-attached", "node:NodeStageVolume", "node:NodePublishVolume",
		"node:NodeUnpublishVolume", "node:NodeUnstageVolume", "event:still-attached", "csi:DeleteVolume"}
	i := 0
	for _, key := range k {
		if i < len(want) && key == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("%s not in order after %v; lane: %v", want[i], want[:i], k)
	}
	if strings.Contains(strings.Join(k, " "), "unseen") {
		t.Fatalf("node steps shown, yet the 'not visible' note too: %v", k)
	}

	// Click NodeStageVolume: the request (secrets stripped), the words, the PV's state.
	var request, why, state, waitClass string
	err = chromedp.Run(ctx,
		chromedp.Click(`#lane .step[data-key="node:NodeStageVolume"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#detail pre.request`, chromedp.ByQuery),
		chromedp.Text(`#detail pre.request`, &request, chromedp.ByQuery),
		chromedp.Text(`#detail .why`, &why, chromedp.ByQuery),
		chromedp.Text(`#detail pre.state`, &state, chromedp.ByQuery),
		chromedp.AttributeValue(`#lane .step[data-key="event:still-attached"]`, "class", &waitClass, nil, chromedp.ByQuery))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(request, `"staging_target_path": "/var/lib/kubelet/plugins`) || strings.Contains(request, "hunter2") {
		t.Fatalf("NodeStageVolume request in the detail:\n%s", request)
	}
	if !strings.Contains(why, "staging directory") || !strings.Contains(state, `"phase": "Bound"`) {
		t.Fatalf("detail words %q / state %q", why, state)
	}
	if !strings.Contains(waitClass, "wait") || strings.Contains(waitClass, "failed") {
		t.Fatalf("VolumeFailedDelete 'still attached' drawn as %q, want a wait, not a failure", waitClass)
	}
	if path := os.Getenv("FLOW_SCREENSHOT"); path != "" {
		var png []byte
		if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The refused claim: red, with the event's text; found with the filter.
	load(node.URL, "PersistentVolumeClaim demo/refused")
	var red, color string
	var listed []string
	for range 100 {
		_ = chromedp.Run(ctx, chromedp.Evaluate(`(document.querySelector('#lane .step.failed[data-key="event:ProvisioningFailed"]') || {}).textContent || ""`, &red))
		if red != "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	err = chromedp.Run(ctx,
		chromedp.Evaluate(`getComputedStyle(document.querySelector('#lane .step.failed .label')).color`, &color),
		chromedp.SendKeys(`#filter`, "refused", chromedp.ByQuery), chromedp.Sleep(700*time.Millisecond),
		chromedp.Evaluate(`[...document.querySelectorAll("#storylist li")].map(e => e.dataset.story)`, &listed))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(red, `unknown parameter "colour"`) || color != "rgb(198, 40, 40)" {
		t.Fatalf("failed provisioning drawn as %q in %s", red, color)
	}
	if len(listed) != 1 || listed[0] != "PersistentVolumeClaim demo/refused" {
		t.Fatalf("filter 'refused' lists %v", listed)
	}
}

// demoStory is a claim's life as recorded in the demo cluster (names and
// messages as there), plus a claim the driver refuses.
func demoStory() []steps.Step {
	pvc, pv, va := "PersistentVolumeClaim demo/data", "PersistentVolume pvc-5c0ffee0", "VolumeAttachment csi-7e1f"
	vol := steps.VolumeObject("pvc-5c0ffee0")
	bound := []byte(`{"metadata":{"name":"data","namespace":"demo","annotations":{"pv.kubernetes.io/bind-completed":"yes","volume.kubernetes.io/selected-node":"csi-hub-node"}},"spec":{"volumeName":"pvc-5c0ffee0"},"status":{"phase":"Bound","capacity":{"storage":"128Mi"}}}`)
	pvState := []byte(`{"metadata":{"name":"pvc-5c0ffee0"},"spec":{"csi":{"driver":"block.csi-hub.io","volumeHandle":"pvc-5c0ffee0"}},"status":{"phase":"Bound"}}`)
	stage := `{"volume_id":"pvc-5c0ffee0","publish_context":{"backing-file":"/var/lib/csi-hub/pool/pvc-5c0ffee0.img"},"staging_target_path":"/var/lib/kubelet/plugins/kubernetes.io/csi/block.csi-hub.io/0f3c/globalmount","volume_capability":{"AccessType":{"Mount":{"fs_type":"ext4"}},"access_mode":{"mode":7}},"secrets":"***stripped***"}`
	return []steps.Step{
		{Kind: steps.Seen, Controller: byUser, Object: pvc, Action: "claim-created", Detail: `asks for 128Mi of StorageClass "csi-hub"`},
		{Kind: steps.Seen, Controller: byScheduler, Object: pvc, Action: "node-selected", Detail: "the Pod goes to node csi-hub-node"},
		{Kind: steps.Trigger, Controller: "provisioner", Object: pvc, Action: `PVC demo/data asks for 128Mi of StorageClass "csi-hub", which driver block.csi-hub.io provisions: creating volume pvc-5c0ffee0`},
		{Kind: steps.Event, Controller: "provisioner", Object: pvc, Action: "Provisioning", Result: "Normal", Detail: `External provisioner is provisioning volume for claim "demo/data"`},
		{Kind: steps.CSI, Controller: "provisioner", Object: pvc, Action: "CreateVolume", Result: "OK", Duration: 41 * time.Millisecond,
			Request:  `{"name":"pvc-5c0ffee0","capacity_range":{"required_bytes":134217728},"volume_capabilities":[{"AccessType":{"Mount":{"fs_type":"ext4"}},"access_mode":{"mode":7}}],"accessibility_requirements":{"requisite":[{"segments":{"topology.block.csi-hub.io/node":"csi-hub-node"}}]}}`,
			Response: `{"volume":{"capacity_bytes":134217728,"volume_id":"pvc-5c0ffee0","accessible_topology":[{"segments":{"topology.block.csi-hub.io/node":"csi-hub-node"}}]}}`},
		{Kind: steps.Write, Controller: "provisioner", Object: pvc, Action: "create persistentvolumes", Result: "201", Duration: 6 * time.Millisecond},
		{Kind: steps.Seen, Controller: "provisioner", Object: pv, Action: "pv-created", Detail: "128Mi, volume handle pvc-5c0ffee0", Related: []string{pvc, vol}, State: pvState},
		{Kind: steps.Event, Controller: "provisioner", Object: pvc, Action: "ProvisioningSucceeded", Result: "Normal", Detail: "Successfully provisioned volume pvc-5c0ffee0"},
		{Kind: steps.Seen, Controller: byKCM, Object: pvc, Action: "claim-bound", Detail: "bound to PV pvc-5c0ffee0", Related: []string{pv}, State: bound},
		{Kind: steps.Seen, Controller: byKCM, Object: va, Action: "va-created", Detail: "attach PV pvc-5c0ffee0 on node csi-hub-node", Related: []string{"PersistentVolume pvc-5c0ffee0"}},
		{Kind: steps.Trigger, Controller: "attacher", Object: va, Action: "VolumeAttachment of pvc-5c0ffee0 on node csi-hub-node: attaching"},
		{Kind: steps.CSI, Controller: "attacher", Object: va, Action: "ControllerPublishVolume", Result: "OK", Duration: 9 * time.Millisecond,
			Request: `{"volume_id":"pvc-5c0ffee0","node_id":"csi-hub-node"}`, Response: `{"publish_context":{"backing-file":"/var/lib/csi-hub/pool/pvc-5c0ffee0.img"}}`},
		{Kind: steps.Write, Controller: "attacher", Object: va, Action: "patch volumeattachments/status", Result: "200"},
		{Kind: steps.Seen, Controller: "attacher", Object: va, Action: "va-attached", Detail: "PV pvc-5c0ffee0 on node csi-hub-node", Related: []string{pv}},
		{Kind: steps.Node, Controller: "kubelet", Object: vol, Action: "NodeStageVolume", Result: "OK", Duration: 380 * time.Millisecond, Request: stage, Response: "{}"},
		{Kind: steps.Node, Controller: "kubelet", Object: vol, Action: "NodePublishVolume", Result: "OK", Duration: 12 * time.Millisecond,
			Request: `{"volume_id":"pvc-5c0ffee0","target_path":"/var/lib/kubelet/pods/51d2/volumes/kubernetes.io~csi/pvc-5c0ffee0/mount"}`, Response: "{}"},
		{Kind: steps.Seen, Controller: byUser, Object: pvc, Action: "claim-deleting"},
		{Kind: steps.Event, Controller: "provisioner", Object: pv, Action: "VolumeFailedDelete", Result: "Warning",
			Detail: "rpc error: code = FailedPrecondition desc = volume pvc-5c0ffee0 is still attached to node csi-hub-node"},
		{Kind: steps.Node, Controller: "kubelet", Object: vol, Action: "NodeUnpublishVolume", Result: "OK", Duration: 8 * time.Millisecond},
		{Kind: steps.Node, Controller: "kubelet", Object: vol, Action: "NodeUnstageVolume", Result: "OK", Duration: 95 * time.Millisecond},
		{Kind: steps.Seen, Controller: byKCM, Object: va, Action: "va-detach-requested", Detail: "detach PV pvc-5c0ffee0 on node csi-hub-node", Related: []string{pv}},
		{Kind: steps.CSI, Controller: "attacher", Object: va, Action: "ControllerUnpublishVolume", Result: "OK", Duration: 7 * time.Millisecond},
		{Kind: steps.Event, Controller: "provisioner", Object: pv, Action: "VolumeFailedDelete", Result: "Warning",
			Detail: "rpc error: code = FailedPrecondition desc = volume pvc-5c0ffee0 is still attached to node csi-hub-node"},
		{Kind: steps.CSI, Controller: "provisioner", Object: pv, Action: "DeleteVolume", Result: "OK", Duration: 15 * time.Millisecond},
		{Kind: steps.Seen, Controller: "", Object: pv, Action: "pv-deleted", Related: []string{pvc, vol}},
		{Kind: steps.Seen, Controller: byUser, Object: "PersistentVolumeClaim demo/refused", Action: "claim-created", Detail: `asks for 64Mi of StorageClass "bad"`},
		{Kind: steps.CSI, Controller: "provisioner", Object: "PersistentVolumeClaim demo/refused", Action: "CreateVolume", Result: "InvalidArgument",
			Detail: `parameters: unknown parameter "colour" (known: type, tier, fsType, mkfsOptions)`},
		{Kind: steps.Event, Controller: "provisioner", Object: "PersistentVolumeClaim demo/refused", Action: "ProvisioningFailed", Result: "Warning",
			Detail: `failed to provision volume with StorageClass "bad": rpc error: code = InvalidArgument desc = parameters: unknown parameter "colour" (known: type, tier, fsType, mkfsOptions)`},
	}
}
