package conformance

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/csi-hub/csi-hub/internal/checkout"
)

// TestSummarize feeds a Ginkgo JSON report like e2e.test writes and checks the
// counting: unfocused specs ignored, filtered specs counted as skips only when
// a machine limit explains them, unknown skip messages kept apart, failures listed.
func TestSummarize(t *testing.T) {
	const report = `[{"SpecReports": [
	 {"ContainerHierarchyTexts": ["[sig-storage] CSI Volumes", "External Storage [Driver: block.csi-hub.io]", "[Testpattern: Dynamic PV (default fs)] provisioning"],
	  "LeafNodeText": "should provision storage with pvc data source", "LeafNodeType": "It", "State": "passed"},
	 {"ContainerHierarchyTexts": ["[sig-storage] CSI Volumes", "External Storage [Driver: block.csi-hub.io]", "[Testpattern: Dynamic PV (ntfs)] volumes"],
	  "LeafNodeText": "should store data", "LeafNodeType": "It", "State": "skipped", "Failure": {"Message": "Driver block.csi-hub.io doesn't support ntfs -- skipping"}},
	 {"ContainerHierarchyTexts": ["[sig-storage] CSI Volumes", "External Storage [Driver: block.csi-hub.io]", "[Testpattern: Dynamic PV (default fs)] volumes"],
	  "LeafNodeText": "should store data", "LeafNodeType": "It", "State": "skipped", "Failure": {"Message": "something new"}},
	 {"ContainerHierarchyTexts": ["[sig-storage] CSI Volumes", "External Storage [Driver: block.csi-hub.io]", "[Testpattern: Dynamic PV (block volmode)] volumeMode"],
	  "LeafNodeText": "should not mount / map unused volumes in a pod [LinuxOnly]", "LeafNodeType": "It", "State": "skipped"},
	 {"ContainerHierarchyTexts": ["[sig-storage] CSI Volumes", "External Storage [Driver: block.csi-hub.io]", "[Testpattern: Dynamic PV (default fs)] volume-expand"],
	  "LeafNodeText": "should resize volume when PVC is edited while pod is using it", "LeafNodeType": "It", "State": "failed", "Failure": {"Message": "timed out\nmore"}},
	 {"ContainerHierarchyTexts": ["[sig-storage] CSI Volumes", "External Storage [Driver: block.csi-hub.io]", "[Testpattern: Dynamic PV (default fs)] disruptive"],
	  "LeafNodeText": "Should test that pv written before kubelet restart is readable after restart [Disruptive]", "LeafNodeType": "It", "State": "skipped"},
	 {"ContainerHierarchyTexts": ["[sig-apps] Deployment"], "LeafNodeText": "should work", "LeafNodeType": "It", "State": "skipped"},
	 {"LeafNodeText": "", "LeafNodeType": "SynchronizedBeforeSuite", "State": "passed"}
	]}]`
	path := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	reports, err := readReports(path)
	if err != nil {
		t.Fatal(err)
	}
	nsenter := limit{reason: "nsenter refused", specs: regexp.MustCompile(`should not mount / map unused volumes in a pod`)}
	p := pass{focus: `External.Storage`, skip: `\[Disruptive\]|\[Serial\]`}
	skip := skipRegexp(p, []limit{nsenter})
	s := summarize(reports, regexp.MustCompile(p.focus), regexp.MustCompile(skip), []limit{nsenter}, allowedSkips)
	if s.Passed != 1 || s.Failed != 1 || s.Skipped != 3 {
		t.Errorf("counts: %s, want 1 passed, 1 failed, 3 skipped (the [Disruptive] spec belongs to another pass)", s)
	}
	if s.Skips["machine limit: nsenter refused"] != 1 || s.Unexplained["something new"] != 1 {
		t.Errorf("skip reasons: %v, unexplained: %v", s.Skips, s.Unexplained)
	}
	if len(s.Failures) != 1 || !strings.Contains(s.Failures[0], "while pod is using it: timed out") || strings.Contains(s.Failures[0], "more") {
		t.Errorf("failures: %q", s.Failures)
	}
	if reason, ok := explainSkip("Driver block.csi-hub.io doesn't support ntfs -- skipping", allowedSkips); !ok || !strings.Contains(reason, "ntfs") {
		t.Errorf("ntfs skip not explained: %q", reason)
	}
	// Messages seen in the full run of 2026-12-03: a pattern without a
	// snapshot type is allowed, a driver without snapshots is not.
	if _, ok := explainSkip(`Driver "block.csi-hub.io" does not support snapshots - skipping`, allowedSkips); !ok {
		t.Error("the multiVolume snapshot spec's pattern skip is not explained")
	}
	if reason, ok := explainSkip(`Driver "block.csi-hub.io" does not support volume snapshots - skipping`, allowedSkips); ok {
		t.Errorf("a missing snapshot capability is explained as %q; it must fail the run", reason)
	}
	if _, ok := explainSkip("VolumeBindingMode immediate is not compatible with a multi-topology environment.", allowedSkips); !ok {
		t.Error("the ephemeral immediate-binding skip is not explained")
	}
}

// TestDriverFileOnlineExpansion: only the ext4 driver loses onlineExpansion,
// and only when the limit was detected.
func TestDriverFileOnlineExpansion(t *testing.T) {
	dir := t.TempDir()
	noCap := []limit{{noOnlineExpansionExt4: true}}
	for _, tc := range []struct {
		name   string
		limits []limit
		want   string
	}{
		{"testdriver.yaml", nil, "onlineExpansion: true"},
		{"testdriver.yaml", noCap, "onlineExpansion: false"},
		{"testdriver-xfs.yaml", noCap, "onlineExpansion: true"},
	} {
		path, err := driverFile(checkout.Root(), dir, tc.name, tc.limits)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(path)
		if !strings.Contains(string(data), tc.want) {
			t.Errorf("%s with %d limits: want %q in\n%s", tc.name, len(tc.limits), tc.want, data)
		}
	}
}

// TestGroupSnapshotSkipOnlyInE2ETestPasses: e2e.test's passes allow the group
// snapshot suite's skip (its external driver lacks GetVolumeGroupSnapshotClass);
// the group-snapshot pass, which runs groupsnapshot.test, does not.
func TestGroupSnapshotSkipOnlyInE2ETestPasses(t *testing.T) {
	const msg = `Driver "block.csi-hub.io" does not support group snapshots - skipping`
	if reason, ok := explainSkip(msg, pass{}.rules()); !ok || !strings.Contains(reason, "GetVolumeGroupSnapshotClass") {
		t.Errorf("e2e.test pass: group snapshot skip not explained: %q", reason)
	}
	if reason, ok := explainSkip(msg, pass{groupSnapshot: true}.rules()); ok {
		t.Errorf("group-snapshot pass: the skip is allowed (%q); it must fail the run", reason)
	}
	for _, passes := range [][]pass{fullPasses, subsetPasses} {
		n := 0
		for _, p := range passes {
			if p.groupSnapshot {
				n++
				if p.binary(tools{e2eTest: "e2e.test", groupSnapshotTest: "groupsnapshot.test"}) != "groupsnapshot.test" {
					t.Errorf("%s: runs %s", p.name, p.binary(tools{}))
				}
			}
		}
		if n != 1 {
			t.Errorf("%d group-snapshot passes, want 1", n)
		}
	}
}
