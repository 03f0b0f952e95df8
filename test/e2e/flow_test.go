package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testFlowPage loads csi-hub's /flow page in headless Chromium while a claim
// is provisioned, attached, staged and published on the real cluster, and
// checks the page draws those steps in order, shows a step's request on click,
// and shows a failed provisioning in red with the Warning event's text. It
// saves a screenshot (the README's docs/flow.png is made this way).
func testFlowPage(t *testing.T) {
	ns := newNamespace(t, "flow")
	chromium := chromiumPath(t)
	hubURL := "http://" + podIP(t, "controller") + ":8080"
	nodeURL := "http://" + podIP(t, "node") + ":9810"

	// A claim the driver refuses: an unknown StorageClass parameter.
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{GenerateName: "flow-bad-"}, Provisioner: driverName,
		Parameters: map[string]string{"colour": "blue"}}
	class, err := env.kube.StorageV1().StorageClasses().Create(context.Background(), class, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.kube.StorageV1().StorageClasses().Delete(context.Background(), class.Name, metav1.DeleteOptions{})
	})
	createClaim(t, ns, "data", claimOpts{size: "64Mi"})
	createClaim(t, ns, "refused", claimOpts{size: "64Mi", class: class.Name})
	startPod(t, podWithClaim(ns, "app", "data", false, v1.RestartPolicyNever, "echo hello > /data/f && sleep 3600"))
	var failure string
	waitFor(t, "ProvisioningFailed event of claim refused", shortWait, func(ctx context.Context) (bool, error) {
		list, err := env.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=refused,reason=ProvisioningFailed"})
		if err != nil || len(list.Items) == 0 {
			return false, err
		}
		failure = list.Items[0].Message
		return true, nil
	})

	ctx := browser(t, chromium)
	claim := "PersistentVolumeClaim " + ns + "/data"
	page := hubURL + "/flow/?node=" + url.QueryEscape(nodeURL) + "#story=" + url.PathEscape(claim)
	want := []string{"csi:CreateVolume", "seen:pv-created", "seen:claim-bound", "csi:ControllerPublishVolume", "node:NodeStageVolume", "node:NodePublishVolume"}
	var keys []string
	if err := chromedp.Run(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("load %s: %v", page, err)
	}
	waitFor(t, "/flow drawing the claim's lane up to NodePublishVolume", shortWait, func(context.Context) (bool, error) {
		if err := chromedp.Run(ctx, chromedp.Evaluate(`[...document.querySelectorAll("#lane .step")].map(e => e.dataset.key)`, &keys)); err != nil {
			return false, err
		}
		return inOrder(keys, want) == "", nil
	})
	var heading string
	if err := chromedp.Run(ctx, chromedp.Text("#lanehead h2", &heading)); err != nil || heading != claim {
		t.Fatalf("lane heading %q (%v), want %q", heading, err, claim)
	}

	// Click CreateVolume: the detail shows the request csi-hub sent.
	pv := boundPV(t, ns, "data")
	var request, why string
	// The lane is drawn again whenever a step arrives, so the node Click
	// found may be replaced before it clicks ("Could not find node with
	// given id"); then it clicks again.
	waitFor(t, "a click on the CreateVolume step", shortWait, func(context.Context) (bool, error) {
		err := chromedp.Run(ctx, chromedp.Click(`#lane .step[data-key="csi:CreateVolume"]`, chromedp.ByQuery))
		if err != nil {
			t.Logf("clicking CreateVolume: %v", err)
		}
		return err == nil, nil
	})
	err = chromedp.Run(ctx,
		chromedp.WaitVisible(`#detail pre.request`, chromedp.ByQuery),
		chromedp.Text(`#detail pre.request`, &request, chromedp.ByQuery),
		chromedp.Text(`#detail .why`, &why, chromedp.ByQuery))
	if err != nil {
		t.Fatalf("clicking CreateVolume: %v", err)
	}
	if !strings.Contains(request, `"name": "`+pv.Name+`"`) || !strings.Contains(request, "capacity_range") {
		t.Fatalf("CreateVolume's detail does not show the request for %s:\n%s", pv.Name, request)
	}
	if !strings.Contains(why, "volume handle") {
		t.Fatalf("CreateVolume's detail lacks the newcomer paragraph: %q", why)
	}
	screenshot(t, ctx, "flow.png")

	// The refused claim: a red step carrying the event's text.
	var red []string
	if err := chromedp.Run(ctx, chromedp.Navigate(hubURL+"/flow/?node="+url.QueryEscape(nodeURL)+"#story="+url.PathEscape("PersistentVolumeClaim "+ns+"/refused"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/flow drawing the refused claim's failure in red", shortWait, func(context.Context) (bool, error) {
		err := chromedp.Run(ctx, chromedp.Evaluate(`[...document.querySelectorAll('#lane .step.failed[data-key="event:ProvisioningFailed"]')].map(e => e.textContent)`, &red))
		return err == nil && len(red) > 0, err
	})
	if !strings.Contains(red[0], failure) {
		t.Fatalf("red step %q does not carry the event's text %q", red[0], failure)
	}
	var color string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`getComputedStyle(document.querySelector('#lane .step.failed .label')).color`, &color)); err != nil || color != "rgb(198, 40, 40)" {
		t.Fatalf("failed step's label colour %q (%v), want red rgb(198, 40, 40)", color, err)
	}
	screenshot(t, ctx, "flow-failure.png")
}

// inOrder returns "" when want appears in keys in that order (other keys may
// come between), else what is missing.
func inOrder(keys, want []string) string {
	i := 0
	for _, k := range keys {
		if i < len(want) && k == want[i] {
			i++
		}
	}
	if i == len(want) {
		return ""
	}
	return fmt.Sprintf("%s not after %v in %v", want[i], want[:i], keys)
}

func podIP(t *testing.T, component string) string {
	t.Helper()
	list, err := env.kube.CoreV1().Pods(hubNamespace).List(context.Background(),
		metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=" + component})
	if err != nil || len(list.Items) == 0 || list.Items[0].Status.PodIP == "" {
		t.Fatalf("csi-hub %s pod IP: %v (%d pods)", component, err, len(list.Items))
	}
	return list.Items[0].Status.PodIP
}

// chromiumPath finds Debian's chromium (hack/install-deps.sh installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium not installed (hack/install-deps.sh installs it): %v", err)
		}
		t.Skipf("SKIPPING the /flow browser test: chromium not installed (hack/install-deps.sh installs it): %v", err)
	}
	return p
}

// browser starts headless Chromium with a fresh profile for this test.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	// Not t.TempDir: Chromium may still write its profile while that cleanup runs.
	profile, err := os.MkdirTemp("", "flow-e2e-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(profile), chromedp.WindowSize(1600, 1250),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc(); os.RemoveAll(profile) })
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// screenshot saves the page under the test's artifacts directory
// ($CSI_HUB_ARTIFACTS, default /tmp/csi-hub-e2e-artifacts).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("CSI_HUB_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "csi-hub-e2e-artifacts")
	}
	var png []byte
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(sctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
