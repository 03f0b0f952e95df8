package fakedriver

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"
)

// callLog records every call received, per method.
type callLog struct {
	mu       sync.Mutex
	requests map[string][]proto.Message
	// changed is closed and replaced on every recorded call, waking WaitCalls.
	changed chan struct{}
}

// Calls is how many calls of method the driver has received (including ones
// that failed, by injection or validation).
func (d *Driver) Calls(method string) int {
	mustKnow(method)
	d.calls.mu.Lock()
	defer d.calls.mu.Unlock()
	return len(d.calls.requests[method])
}

// Requests returns copies of the requests of method received so far, oldest
// first, secrets included.
func (d *Driver) Requests(method string) []proto.Message {
	mustKnow(method)
	d.calls.mu.Lock()
	defer d.calls.mu.Unlock()
	out := make([]proto.Message, 0, len(d.calls.requests[method]))
	for _, r := range d.calls.requests[method] {
		out = append(out, proto.Clone(r))
	}
	return out
}

// RequestsOf returns typed copies of the requests received of the method that
// takes T, e.g. RequestsOf[*csi.CreateVolumeRequest](d).
func RequestsOf[T proto.Message](d *Driver) []T {
	var zero T
	method := strings.TrimSuffix(string(zero.ProtoReflect().Descriptor().Name()), "Request")
	var out []T
	for _, r := range d.Requests(method) {
		out = append(out, r.(T))
	}
	return out
}

// LastRequest returns a copy of the latest request of the method that takes
// T, and false if there was none.
func LastRequest[T proto.Message](d *Driver) (T, bool) {
	all := RequestsOf[T](d)
	if len(all) == 0 {
		var zero T
		return zero, false
	}
	return all[len(all)-1], true
}

// ResetCalls forgets the calls received so far.
func (d *Driver) ResetCalls() {
	d.calls.mu.Lock()
	defer d.calls.mu.Unlock()
	d.calls.requests = nil
}

func (c *callLog) record(method string, msg proto.Message) {
	if msg == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.requests == nil {
		c.requests = map[string][]proto.Message{}
	}
	c.requests[method] = append(c.requests[method], proto.Clone(msg))
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// WaitCalls waits until the driver has received at least n calls of method,
// or ctx ends.
func (d *Driver) WaitCalls(ctx context.Context, method string, n int) error {
	mustKnow(method)
	for {
		d.calls.mu.Lock()
		got := len(d.calls.requests[method])
		if d.calls.changed == nil {
			d.calls.changed = make(chan struct{})
		}
		changed := d.calls.changed
		d.calls.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d %s calls, got %d: %w", n, method, got, ctx.Err())
		}
	}
}

// intercept wraps every call: account, refuse concurrent operations (if
// asked), then gate, delay and injected errors, then the handler.
func (d *Driver) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := path.Base(info.FullMethod)
	msg, _ := req.(proto.Message)
	d.calls.record(method, msg)
	klog.V(4).InfoS("CSI call", "method", method, "request", protosanitizer.StripSecrets(req))
	if key := operationKey(msg); key != "" && d.opts.AbortConcurrent {
		if !d.inflight.begin(key) {
			return nil, status.Errorf(codes.Aborted, "an operation on %s is already in progress", key)
		}
		defer d.inflight.end(key)
	}
	gate, delay, before, after := d.faults.take(method, msg)
	if gate != nil {
		klog.V(4).InfoS("CSI call held at gate", "method", method)
		gate.hold()
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if before != nil {
		klog.V(4).InfoS("CSI call failed by injection", "method", method, "err", before)
		return nil, before
	}
	resp, err := handler(ctx, req)
	if err == nil && after != nil {
		klog.V(4).InfoS("CSI call succeeded, injected error returned instead", "method", method, "err", after)
		return nil, after
	}
	if err != nil {
		klog.V(4).InfoS("CSI call failed", "method", method, "err", err)
	} else {
		klog.V(5).InfoS("CSI call succeeded", "method", method, "response", protosanitizer.StripSecrets(resp))
	}
	return resp, err
}
