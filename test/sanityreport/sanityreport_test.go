package sanityreport

import (
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
)

// recorder captures what Check reports instead of failing the real test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Logf(string, ...any)               {}
func (r *recorder) Errorf(format string, args ...any) { r.errors = append(r.errors, format) }

func spec(container string, state types.SpecState, msg string) types.SpecReport {
	return types.SpecReport{LeafNodeType: types.NodeTypeIt, ContainerHierarchyTexts: []string{container},
		State: state, Failure: types.Failure{Message: msg}}
}

func TestCheckJudgesCounts(t *testing.T) {
	c := &Counts{states: map[string]map[types.SpecState]int{}, skips: map[string]map[string]int{}}
	c.add(Report{SpecReports: []types.SpecReport{
		spec("mount", types.SpecStatePassed, ""),
		spec("mount", types.SpecStateSkipped, "GroupControllerService not supported"),
		spec("block", types.SpecStateSkipped, "feature X broken"),
	}})
	r := &recorder{}
	c.Check(r, "test", 3, []string{"GroupControllerService not supported"})
	got := strings.Join(r.errors, "\n")
	for _, want := range []string{"skipped for a reason", "no spec passed", "containers"} {
		if !strings.Contains(got, want) {
			t.Errorf("Check did not report %q; reported:\n%s", want, got)
		}
	}
	if len(r.errors) != 3 {
		t.Errorf("%d errors, want 3 (the allowed skip and the passing container are fine): %v", len(r.errors), r.errors)
	}
}
