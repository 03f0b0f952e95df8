package steps

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
)

// EventRecorder records each emitted event as a step, then hands it to next.
func (r *Recorder) EventRecorder(next record.EventRecorder) record.EventRecorder {
	return eventRecorder{r: r, next: next}
}

type eventRecorder struct {
	r    *Recorder
	next record.EventRecorder
}

func (e eventRecorder) record(obj runtime.Object, eventtype, reason, message string) {
	e.r.Record(context.Background(), Step{Kind: Event, Object: ObjectName(obj), Action: reason, Result: eventtype, Detail: message})
}

func (e eventRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	e.record(obj, eventtype, reason, message)
	e.next.Event(obj, eventtype, reason, message)
}

func (e eventRecorder) Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	e.record(obj, eventtype, reason, fmt.Sprintf(messageFmt, args...))
	e.next.Eventf(obj, eventtype, reason, messageFmt, args...)
}

func (e eventRecorder) AnnotatedEventf(obj runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...any) {
	e.record(obj, eventtype, reason, fmt.Sprintf(messageFmt, args...))
	e.next.AnnotatedEventf(obj, annotations, eventtype, reason, messageFmt, args...)
}

// ObjectName renders obj as "Kind namespace/name" for step records.
func ObjectName(obj runtime.Object) string {
	if obj == nil {
		return ""
	}
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if kind == "" {
		kind = fmt.Sprintf("%T", obj)
		for i := len(kind) - 1; i >= 0; i-- {
			if kind[i] == '.' {
				kind = kind[i+1:]
				break
			}
		}
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return kind
	}
	if m.GetNamespace() == "" {
		return kind + " " + m.GetName()
	}
	return kind + " " + m.GetNamespace() + "/" + m.GetName()
}
