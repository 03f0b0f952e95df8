package testutil

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// Events returns the events in namespace ns with reason on the object named name.
func Events(t testing.TB, ctx context.Context, kube kubernetes.Interface, ns, name, reason string) []corev1.Event {
	t.Helper()
	list, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": name, "reason": reason}.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// WaitEvent waits up to 30s for an event of eventType with reason on the
// object named name whose message contains text, and returns it.
func WaitEvent(t testing.TB, ctx context.Context, kube kubernetes.Interface, ns, name, reason, eventType, text string) corev1.Event {
	t.Helper()
	var found corev1.Event
	Eventually(t, ctx, 30*time.Second, fmt.Sprintf("%s event %s on %s containing %q", eventType, reason, name, text), func() (bool, error) {
		for _, ev := range Events(t, ctx, kube, ns, name, reason) {
			if ev.Type == eventType && strings.Contains(ev.Message, text) {
				found = ev
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// DrainEvents empties a record.FakeRecorder and returns what it held, one
// "Type Reason message" string per event, oldest first.
func DrainEvents(rec *record.FakeRecorder) []string {
	var out []string
	for len(rec.Events) > 0 {
		out = append(out, <-rec.Events)
	}
	return out
}

// EventsHavePrefixes reports whether there are as many events as prefixes
// and each event starts with its prefix ("Warning ProvisioningFailed").
func EventsHavePrefixes(events, prefixes []string) bool {
	if len(events) != len(prefixes) {
		return false
	}
	for i := range events {
		if !strings.HasPrefix(events[i], prefixes[i]) {
			return false
		}
	}
	return true
}
