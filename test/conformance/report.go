package conformance

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// The parts of Ginkgo's JSON report (--json-report, a list of
// types.Report) the summary needs; decoded without importing the e2e suite's
// Ginkgo version.
type ginkgoReport struct {
	SpecReports []specReport
}

type specReport struct {
	ContainerHierarchyTexts []string
	LeafNodeText            string
	LeafNodeType            string
	State                   string
	RunTime                 time.Duration
	Failure                 struct{ Message string }
}

func (s specReport) text() string {
	return strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " ")
}

// summary of one e2e.test pass over the specs it selected.
type summary struct {
	Passed, Failed, Skipped int
	Minutes                 float64
	Failures                []string       // spec text: first line of the failure
	Skips                   map[string]int // reason -> count
	Unexplained             map[string]int // skip message -> count, for skips no rule allows
}

func (s summary) String() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped in %.1f min", s.Passed, s.Failed, s.Skipped, s.Minutes)
}

// summarize counts the It specs the pass selected (full text matches focus
// and not filter), plus those the filter removed because of a detected
// machine limit (limits): Ginkgo reports specs removed by --focus/--skip as
// skipped with no message, so they are told apart here by their text.
func summarize(reports []ginkgoReport, focus, filter *regexp.Regexp, limits []limit, rules []skipRule) summary {
	s := summary{Skips: map[string]int{}, Unexplained: map[string]int{}}
	for _, r := range reports {
		for _, sp := range r.SpecReports {
			if sp.LeafNodeType != "It" {
				continue
			}
			text := sp.text()
			if !focus.MatchString(text) {
				continue
			}
			if filter != nil && filter.MatchString(text) {
				for _, l := range limits {
					if l.specs != nil && l.specs.MatchString(text) {
						s.Skipped++
						s.Skips["machine limit: "+l.reason]++
						break
					}
				}
				continue
			}
			switch sp.State {
			case "passed":
				s.Passed++
			case "skipped":
				s.Skipped++
				if reason, ok := explainSkip(sp.Failure.Message, rules); ok {
					s.Skips[reason]++
				} else {
					s.Unexplained[sp.Failure.Message]++
				}
			default: // failed, panicked, interrupted, aborted, timedout
				s.Failed++
				msg, _, _ := strings.Cut(strings.TrimSpace(sp.Failure.Message), "\n")
				s.Failures = append(s.Failures, fmt.Sprintf("[%s] %s: %s", sp.State, text, msg))
			}
		}
	}
	sort.Strings(s.Failures)
	return s
}

func readReports(path string) ([]ginkgoReport, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	var reports []ginkgoReport
	if err := json.Unmarshal(data, &reports); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return reports, nil
}

// print writes the summary and every skip's reason, as `make conformance` shows it.
func (s summary) print(w io.Writer, pass string) {
	fmt.Fprintf(w, "== %s: %s\n", pass, s)
	for _, reason := range sortedKeys(s.Skips) {
		fmt.Fprintf(w, "   skipped %3dx: %s\n", s.Skips[reason], reason)
	}
	for _, msg := range sortedKeys(s.Unexplained) {
		fmt.Fprintf(w, "   skipped %3dx for a reason no rule allows: %q\n", s.Unexplained[msg], msg)
	}
	for _, f := range s.Failures {
		fmt.Fprintf(w, "   FAILED: %s\n", f)
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
