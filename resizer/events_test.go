package resizer

import "testing"

// The event reasons are external-resizer's strings (v2.3.0 pkg/util/events.go),
// spelled as upstream spells them: alerts and event filters match on them.
func TestEventReasonsAreUpstreams(t *testing.T) {
	for got, want := range map[string]string{
		reasonResizing:               "Resizing",
		reasonResizeFailed:           "VolumeResizeFailed",
		reasonResizeSuccessful:       "VolumeResizeSuccessful",
		reasonFileSystemResizeNeeded: "FileSystemResizeRequired",
		reasonModify:                 "VolumeModify",
		reasonModifyFailed:           "VolumeModifyFailed",
		reasonModifySuccessful:       "VolumeModifySuccessful",
		reasonModifyCancelled:        "VolumeModifyCanceled",
	} {
		if got != want {
			t.Errorf("event reason %q, upstream %q", got, want)
		}
	}
}
