// Package steps is the one place every step of csi-hub's work passes through:
// the trigger a controller acted on, each CSI call it made, each Kubernetes write
// and each event. Steps are kept in a ring for /steps (and its live stream),
// logged at -v=4, and counted, so the flow can be shown to people learning how
// Kubernetes storage works and API writes can be measured per volume.
package steps

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Kind says what a step was.
type Kind string

const (
	Trigger Kind = "trigger" // why a controller acted
	CSI     Kind = "csi"     // a call to the CSI driver
	Write   Kind = "write"   // a mutating Kubernetes API request
	Event   Kind = "event"   // an Event emitted on an object
	// Seen is a step another component took (kube-controller-manager, the
	// scheduler, the kubelet, a user), read off an object's change on the
	// informers csi-hub already has.
	Seen Kind = "seen"
	// Node is a CSI call the driver's node service served (recorded by the
	// plugin: the kubelet calls it directly, csi-hub never sees these calls).
	Node Kind = "node"
)

// Step is one recorded step.
type Step struct {
	Seq        uint64        `json:"seq"`
	Time       time.Time     `json:"time"`
	Controller string        `json:"controller,omitempty"`
	Object     string        `json:"object,omitempty"` // e.g. "PersistentVolumeClaim default/data"
	Kind       Kind          `json:"kind"`
	Action     string        `json:"action"`           // CSI method, "create persistentvolumes", event reason...
	Result     string        `json:"result,omitempty"` // gRPC code, HTTP status, event type
	Detail     string        `json:"detail,omitempty"`
	Duration   time.Duration `json:"durationNs,omitempty"`
	// Request and Response are a CSI call's messages, secrets stripped.
	Request  string `json:"request,omitempty"`
	Response string `json:"response,omitempty"`
	// Related names objects of the same story as Object (a PV's claim, an
	// attachment's PV, "CSIVolume <handle>"), so a viewer can group them.
	Related []string `json:"related,omitempty"`
	// State is the object as it was at this step (Seen steps), without managedFields.
	State json.RawMessage `json:"state,omitempty"`
}

type ctxKey struct{}

type subject struct{ controller, object string }

// WithObject marks ctx as work of controller on object, so CSI calls and API
// writes made with it are attributed to that object.
func WithObject(ctx context.Context, controller, object string) context.Context {
	return context.WithValue(ctx, ctxKey{}, subject{controller, object})
}

func fromContext(ctx context.Context) subject {
	s, _ := ctx.Value(ctxKey{}).(subject)
	return s
}

// Recorder keeps the most recent steps and fans them out to watchers.
type Recorder struct {
	mu     sync.Mutex
	ring   []Step
	next   uint64
	subs   map[chan Step]struct{}
	writes map[string]int // "verb resource" -> count
}

// NewRecorder keeps the last size steps.
func NewRecorder(size int) *Recorder {
	if size <= 0 {
		size = 1000
	}
	return &Recorder{ring: make([]Step, 0, size), subs: map[chan Step]struct{}{}, writes: map[string]int{}}
}

// Record stores s, filling in sequence, time and the subject carried by ctx.
func (r *Recorder) Record(ctx context.Context, s Step) {
	if r == nil {
		return
	}
	subj := fromContext(ctx)
	if s.Controller == "" {
		s.Controller = subj.controller
	}
	if s.Object == "" {
		s.Object = subj.object
	}
	if s.Time.IsZero() {
		s.Time = time.Now()
	}
	r.mu.Lock()
	r.next++
	s.Seq = r.next
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, s)
	} else {
		r.ring[int((s.Seq-1)%uint64(cap(r.ring)))] = s
	}
	if s.Kind == Write {
		r.writes[s.Action]++
	}
	for ch := range r.subs {
		select {
		case ch <- s:
		default: // a slow watcher misses steps rather than slowing the controllers
		}
	}
	r.mu.Unlock()
	klog.V(4).InfoS("Step", "kind", s.Kind, "controller", s.Controller, "object", s.Object,
		"action", s.Action, "result", s.Result, "detail", s.Detail, "duration", s.Duration)
}

// Trigger records why a controller is about to act on the object in ctx.
func (r *Recorder) Trigger(ctx context.Context, why string) {
	r.Record(ctx, Step{Kind: Trigger, Action: why})
}

// Recent returns the recorded steps with sequence number > after, oldest first.
func (r *Recorder) Recent(after uint64) []Step {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Step, 0, len(r.ring))
	n := uint64(len(r.ring))
	first := uint64(1)
	if r.next > n {
		first = r.next - n + 1
	}
	for seq := max(first, after+1); seq <= r.next; seq++ {
		out = append(out, r.ring[int((seq-1)%uint64(cap(r.ring)))])
	}
	return out
}

// Writes returns how many mutating API requests were made, by "verb resource".
func (r *Recorder) Writes() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.writes))
	for k, v := range r.writes {
		out[k] = v
	}
	return out
}

// Subscribe returns a channel receiving every new step until cancel is called.
func (r *Recorder) Subscribe() (ch <-chan Step, cancel func()) {
	c := make(chan Step, 256)
	r.mu.Lock()
	r.subs[c] = struct{}{}
	r.mu.Unlock()
	return c, func() {
		r.mu.Lock()
		delete(r.subs, c)
		r.mu.Unlock()
	}
}
