package resizer

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/record"
)

// A failed status write is a Warning event and an error, except a Conflict,
// which is only the informer lagging behind: a quiet short requeue.
func TestWriteFailed(t *testing.T) {
	rec := record.NewFakeRecorder(10)
	c := &Controller{d: Deps{Events: rec, RetryStart: 250 * time.Millisecond}}
	pvc := &v1.PersistentVolumeClaim{}

	conflict := apierrors.NewConflict(schema.GroupResource{Resource: "persistentvolumeclaims"}, "data", errors.New("stale"))
	err := c.writeFailed(pvc, reasonResizeFailed, fmt.Errorf("marking PVC: %w", conflict))
	if err == nil || !strings.Contains(err.Error(), "requeue after 250ms") {
		t.Errorf("conflict: err = %v, want a requeue after --retry-interval-start", err)
	}
	if len(rec.Events) != 0 {
		t.Errorf("conflict produced event %q", <-rec.Events)
	}

	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "persistentvolumeclaims"}, "data", errors.New("no RBAC"))
	err = c.writeFailed(pvc, reasonModifyFailed, fmt.Errorf("recording class: %w", forbidden))
	if !apierrors.IsForbidden(err) {
		t.Errorf("err = %v, want the write error back for a retry with backoff", err)
	}
	select {
	case ev := <-rec.Events:
		if !strings.HasPrefix(ev, "Warning VolumeModifyFailed") || !strings.Contains(ev, "no RBAC") {
			t.Errorf("event = %q, want a Warning VolumeModifyFailed naming the cause", ev)
		}
	default:
		t.Error("no Warning event for a failed write")
	}
}
