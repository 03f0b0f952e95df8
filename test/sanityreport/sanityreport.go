// Package sanityreport counts csi-sanity's results per top-level Ginkgo
// container (one per access type, say) and judges them, so that every suite
// that runs csi-sanity (test/sanity on the host, test/vm/guest in the NVMe VM)
// applies the same rule: no spec may be skipped except for a capability the
// plugin does not claim, and each container must pass something.
package sanityreport

import (
	"sort"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
)

// Counts collects spec states and skip messages per container.
type Counts struct {
	states map[string]map[types.SpecState]int
	skips  map[string]map[string]int
}

// Register installs the collecting ReportAfterSuite node; call it before RunSpecs.
func Register() *Counts {
	c := &Counts{states: map[string]map[types.SpecState]int{}, skips: map[string]map[string]int{}}
	ReportAfterSuite("csi-sanity counts", func(r Report) { c.add(r) })
	return c
}

func (c *Counts) add(r Report) {
	for _, s := range r.SpecReports {
		if s.LeafNodeType != types.NodeTypeIt || len(s.ContainerHierarchyTexts) == 0 {
			continue
		}
		at := s.ContainerHierarchyTexts[0]
		if c.states[at] == nil {
			c.states[at], c.skips[at] = map[types.SpecState]int{}, map[string]int{}
		}
		c.states[at][s.State]++
		if s.State == types.SpecStateSkipped {
			c.skips[at][s.Failure.Message]++
		}
	}
}

// Check logs the counts (label names the suite) and fails t when a container
// is missing, passed nothing, or skipped a spec for a reason not in allowedSkips.
// Failed specs already fail t through Ginkgo.
func (c *Counts) Check(t testing.TB, label string, containers int, allowedSkips []string) {
	t.Helper()
	for _, at := range sortedKeys(c.states) {
		n := c.states[at]
		t.Logf("%s %s: %d passed, %d failed, %d skipped, %d panicked", label, at,
			n[types.SpecStatePassed], n[types.SpecStateFailed], n[types.SpecStateSkipped], n[types.SpecStatePanicked])
		for _, msg := range sortedKeys(c.skips[at]) {
			t.Logf("  skipped %dx: %s", c.skips[at][msg], msg)
			if !allowed(msg, allowedSkips) {
				t.Errorf("%s: spec skipped for a reason other than an unclaimed capability: %q", at, msg)
			}
		}
		if n[types.SpecStatePassed] == 0 {
			t.Errorf("%s: no spec passed", at)
		}
	}
	if len(c.states) != containers {
		t.Errorf("specs ran in %d containers %v, want %d", len(c.states), sortedKeys(c.states), containers)
	}
}

func allowed(msg string, allowedSkips []string) bool {
	for _, a := range allowedSkips {
		if strings.Contains(msg, a) {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
