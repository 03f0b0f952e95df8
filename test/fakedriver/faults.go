package fakedriver

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"
)

// Forever makes an injected error apply to every call until ClearFaults.
const Forever = -1

// knownMethods are the CSI RPC names the driver serves. Fault and accounting
// helpers panic on other names: a misspelt method would otherwise make a
// test silently inject nothing and pass.
var knownMethods = func() map[string]bool {
	m := map[string]bool{}
	for _, sd := range []grpc.ServiceDesc{csi.Identity_ServiceDesc, csi.Controller_ServiceDesc, csi.Node_ServiceDesc} {
		for _, md := range sd.Methods {
			m[md.MethodName] = true
		}
	}
	return m
}()

func mustKnow(method string) {
	if !knownMethods[method] {
		panic(fmt.Sprintf("fakedriver: unknown CSI method %q", method))
	}
}

type injectedError struct {
	err       error
	remaining int // Forever or > 0
	after     bool
}

type faults struct {
	mu     sync.Mutex
	errors map[string][]*injectedError
	delays map[string]time.Duration
	gates  map[string]*Gate
}

// InjectError makes the next `times` calls of method (Forever: all calls) fail
// with code and msg before the driver acts on them. A call takes its error
// when it arrives, before any gate or delay. Several injections on one method
// queue up in order.
func (d *Driver) InjectError(method string, code codes.Code, msg string, times int) {
	d.inject(method, code, msg, times, false)
}

// InjectErrorAfter is InjectError except that the driver performs the call
// first and only then returns the error: the operation took effect but its
// response was lost, the case that leaks volumes in a careless caller.
func (d *Driver) InjectErrorAfter(method string, code codes.Code, msg string, times int) {
	d.inject(method, code, msg, times, true)
}

func (d *Driver) inject(method string, code codes.Code, msg string, times int, after bool) {
	mustKnow(method)
	if times != Forever && times <= 0 {
		panic(fmt.Sprintf("fakedriver: InjectError times must be > 0 or Forever, got %d", times))
	}
	f := &d.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.errors == nil {
		f.errors = map[string][]*injectedError{}
	}
	f.errors[method] = append(f.errors[method], &injectedError{err: status.Error(code, msg), remaining: times, after: after})
}

// SetDelay makes every call of method wait delay before it is handled (0
// removes it). The wait ignores the caller's deadline, like a slow backend
// that finishes an operation its caller has given up on.
func (d *Driver) SetDelay(method string, delay time.Duration) {
	mustKnow(method)
	f := &d.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.delays == nil {
		f.delays = map[string]time.Duration{}
	}
	if delay <= 0 {
		delete(f.delays, method)
		return
	}
	f.delays[method] = delay
}

// ClearFaults removes every injected error and delay and releases every gate.
func (d *Driver) ClearFaults() {
	f := &d.faults
	f.mu.Lock()
	gates := f.gates
	f.errors, f.delays, f.gates = nil, nil, nil
	f.mu.Unlock()
	for _, g := range gates {
		g.Release()
	}
}

// takeFault consumes what applies to one arriving call.
func (f *faults) take(method string) (g *Gate, delay time.Duration, before, after error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g = f.gates[method]
	delay = f.delays[method]
	queue := f.errors[method]
	if len(queue) > 0 {
		ie := queue[0]
		if ie.remaining != Forever {
			ie.remaining--
			if ie.remaining == 0 {
				f.errors[method] = queue[1:]
			}
		}
		if ie.after {
			after = ie.err
		} else {
			before = ie.err
		}
	}
	return g, delay, before, after
}

// Gate holds calls of one method until Release, so a test can act (restart
// csi-hub, kill a client) while a call is in flight inside the driver.
type Gate struct {
	method   string
	faults   *faults
	release  chan struct{}
	once     sync.Once
	mu       sync.Mutex
	held     int
	arrived  chan struct{}
	arriveMu sync.Once
}

// Gate installs a gate on method: from now on its calls block inside the
// driver until the gate is released. They stay blocked even if the caller
// goes away, and then complete, as a backend would. If a gate is already
// installed on method it is returned.
func (d *Driver) Gate(method string) *Gate {
	mustKnow(method)
	f := &d.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.gates[method]; g != nil {
		return g
	}
	if f.gates == nil {
		f.gates = map[string]*Gate{}
	}
	g := &Gate{method: method, faults: f, release: make(chan struct{}), arrived: make(chan struct{})}
	f.gates[method] = g
	return g
}

// Arrived is closed when the first call reaches the gate.
func (g *Gate) Arrived() <-chan struct{} { return g.arrived }

// WaitArrived waits until a call is held by the gate or ctx ends.
func (g *Gate) WaitArrived(ctx context.Context) error {
	select {
	case <-g.arrived:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no %s call reached the gate: %w", g.method, ctx.Err())
	}
}

// Held is the number of calls blocked at the gate right now.
func (g *Gate) Held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// Release lets every held call proceed and removes the gate, so later calls
// pass freely. Releasing twice is harmless.
func (g *Gate) Release() {
	g.once.Do(func() {
		g.faults.mu.Lock()
		if g.faults.gates[g.method] == g {
			delete(g.faults.gates, g.method)
		}
		g.faults.mu.Unlock()
		close(g.release)
	})
}

func (g *Gate) hold() {
	g.mu.Lock()
	g.held++
	g.mu.Unlock()
	g.arriveMu.Do(func() { close(g.arrived) })
	<-g.release
	g.mu.Lock()
	g.held--
	g.mu.Unlock()
}

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

func (c *callLog) record(method string, req any) {
	msg, ok := req.(proto.Message)
	if !ok {
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

// intercept wraps every call: account, then gate, delay and injected errors,
// then the handler.
func (d *Driver) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := path.Base(info.FullMethod)
	d.calls.record(method, req)
	klog.V(4).InfoS("CSI call", "method", method, "request", protosanitizer.StripSecrets(req))
	gate, delay, before, after := d.faults.take(method)
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
