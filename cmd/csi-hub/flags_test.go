package main

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/csi-hub/csi-hub/internal/app"
)

// sidecarFlag is one line of testdata/sidecar-flags.txt.
type sidecarFlag struct {
	name, def, source string
}

func readSidecarFlags(t *testing.T) []sidecarFlag {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "sidecar-flags.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []sidecarFlag
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 5 {
			t.Fatalf("malformed line %q: want flag default sidecar release file", line)
		}
		def := fields[1]
		if def == `""` {
			def = ""
		}
		out = append(out, sidecarFlag{name: fields[0], def: def, source: strings.Join(fields[2:], " ")})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 100 {
		t.Fatalf("only %d flags listed; the list is incomplete", len(out))
	}
	return out
}

// switchingSection is the README's "Switching from the sidecars" section: the
// one place where csi-hub's deliberate differences are listed.
func switchingSection(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "## Switching from the sidecars")
	if i < 0 {
		t.Fatal(`README.md has no "## Switching from the sidecars" section`)
	}
	s = s[i+3:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// Every flag of the six sidecars' current releases is accepted by csi-hub
// with the sidecar's default value; where csi-hub's default differs, the
// README's switching section names the flag and says why.
func TestSidecarFlags(t *testing.T) {
	readme := switchingSection(t)
	documented := func(name string) bool {
		return regexp.MustCompile("`--" + regexp.QuoteMeta(name) + "[`= ]").MatchString(readme)
	}
	for _, sf := range readSidecarFlags(t) {
		c := newCLI()
		c.fs.SetOutput(discard{})
		f := c.fs.Lookup(sf.name)
		if f == nil {
			t.Errorf("--%s (%s) is not a csi-hub flag", sf.name, sf.source)
			continue
		}
		if err := c.fs.Parse([]string{"--" + sf.name + "=" + sf.def}); err != nil {
			t.Errorf("--%s=%q (%s's default) is refused: %v", sf.name, sf.def, sf.source, err)
		}
		if f.DefValue != sf.def && !documented(sf.name) {
			t.Errorf("--%s defaults to %q in csi-hub, %q in %s, and the README's switching section does not explain it",
				sf.name, f.DefValue, sf.def, sf.source)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

var _ = flag.ContinueOnError

// parse builds csi-hub's command line and parses args (feature gates applied,
// logging left alone).
func parse(t *testing.T, args ...string) *cli {
	t.Helper()
	c := newCLI()
	c.fs.SetOutput(discard{})
	if err := c.fs.Parse(args); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	if err := c.common.ApplyGates(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	app.ApplySidecarGates(c.common, &c.ctrl)
	return c
}

// external-provisioner and external-attacher both have --default-fstype: each
// controller gets what its sidecar would have; --attacher-default-fstype
// sets the attacher's alone, in either order.
func TestDefaultFSTypeReachesProvisionerAndAttacher(t *testing.T) {
	c := parse(t, "--default-fstype=xfs")
	if p, a := c.ctrl.Provisioner.DefaultFSType, c.ctrl.Attacher.DefaultFSType; p != "xfs" || a != "xfs" {
		t.Errorf("--default-fstype=xfs: provisioner %q, attacher %q; want xfs for both", p, a)
	}
	for _, args := range [][]string{
		{"--default-fstype=xfs", "--attacher-default-fstype=ext4"},
		{"--attacher-default-fstype=ext4", "--default-fstype=xfs"},
	} {
		c := parse(t, args...)
		if p, a := c.ctrl.Provisioner.DefaultFSType, c.ctrl.Attacher.DefaultFSType; p != "xfs" || a != "ext4" {
			t.Errorf("%v: provisioner %q, attacher %q; want xfs and ext4", args, p, a)
		}
	}
}

// external-resizer's AnnotateFsResize gate is on by default (beta); the gate
// and csi-hub's own flag turn it off, the flag winning.
func TestAnnotateFsResizeDefaultsAsUpstream(t *testing.T) {
	if !parse(t).ctrl.Resizer.AnnotateFsResize {
		t.Error("AnnotateFsResize is off by default; external-resizer v2.3.0 has it on")
	}
	if parse(t, "--feature-gates=AnnotateFsResize=false").ctrl.Resizer.AnnotateFsResize {
		t.Error("--feature-gates=AnnotateFsResize=false left it on")
	}
	if !parse(t, "--feature-gates=AnnotateFsResize=false", "--resizer-annotate-fs-resize=true").ctrl.Resizer.AnnotateFsResize {
		t.Error("--resizer-annotate-fs-resize=true lost to the gate")
	}
	c := newCLI()
	c.fs.SetOutput(discard{})
	if err := c.fs.Parse([]string{"--feature-gates=NoSuchGate=true"}); err != nil {
		t.Fatal(err)
	}
	if err := c.common.ApplyGates(); err == nil || !strings.Contains(err.Error(), "NoSuchGate") {
		t.Errorf("an unknown feature gate: error %v, want one naming it", err)
	}
}

// Sidecar-only settings are parsed into csi-hub's options.
func TestSidecarFlagValues(t *testing.T) {
	c := parse(t, "--leader-election-labels=team:storage,tier:gold", "--workers=7", "--resize-timeout=42s",
		"--kube-api-capacity-qps=3", "--kube-api-capacity-burst=9", "--capacity-threads=4",
		"--cloning-protection-threads=2", "--prevent-volume-mode-conversion=false", "--resync-period=20m")
	if got := c.common.Compat.LeaderElectionLabels; len(got) != 2 || got["team"] != "storage" || got["tier"] != "gold" {
		t.Errorf("--leader-election-labels: %v", got)
	}
	r, p := c.ctrl.Resizer, c.ctrl.Provisioner
	if r.WorkerThreads != 7 || r.Timeout.String() != "42s" {
		t.Errorf("--workers/--resize-timeout: resizer workers %d, timeout %s", r.WorkerThreads, r.Timeout)
	}
	if p.KubeAPICapacityQPS != 3 || p.KubeAPICapacityBurst != 9 || p.CapacityThreads != 4 || p.CloningProtectionThreads != 2 || p.PreventVolumeModeConversion {
		t.Errorf("provisioner flags not applied: %+v", p)
	}
	if got := c.ctrl.Snapshotter.ResyncPeriod.String(); got != "20m0s" {
		t.Errorf("--resync-period: snapshotter resync %s", got)
	}
	if parse(t).ctrl.Resizer.WorkerThreads != 0 {
		t.Error("--workers unset must leave the resizer on --worker-threads / its default")
	}
	c = newCLI()
	c.fs.SetOutput(discard{})
	_ = c.fs.Parse([]string{"--leader-election-labels=broken"})
	if err := c.fs.Parse([]string{"--leader-election-labels=nocolon"}); err == nil {
		t.Error("--leader-election-labels=nocolon accepted; want csi-lib-utils' malformed-item error")
	}
}
