package fakedriver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
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
	match     func(proto.Message) bool // nil: every call
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
	d.inject(method, code, msg, times, false, nil)
}

// InjectErrorIf is InjectError for only the calls whose request match
// accepts, e.g. one volume among many handled concurrently; times counts
// matching calls only. match sees the request as received: it must not
// modify or keep it.
func (d *Driver) InjectErrorIf(method string, match func(req proto.Message) bool, code codes.Code, msg string, times int) {
	d.inject(method, code, msg, times, false, match)
}

// InjectErrorAfter is InjectError except that the driver performs the call
// first and only then returns the error: the operation took effect but its
// response was lost, the case that leaks volumes in a careless caller.
func (d *Driver) InjectErrorAfter(method string, code codes.Code, msg string, times int) {
	d.inject(method, code, msg, times, true, nil)
}

func (d *Driver) inject(method string, code codes.Code, msg string, times int, after bool, match func(proto.Message) bool) {
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
	f.errors[method] = append(f.errors[method], &injectedError{err: status.Error(code, msg), remaining: times, after: after, match: match})
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

// take consumes what applies to one arriving call: the first queued error
// that matches it, the gate and the delay.
func (f *faults) take(method string, req proto.Message) (g *Gate, delay time.Duration, before, after error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g = f.gates[method]
	delay = f.delays[method]
	queue := f.errors[method]
	for i, ie := range queue {
		if ie.match != nil && !ie.match(req) {
			continue
		}
		if ie.remaining != Forever {
			ie.remaining--
			if ie.remaining == 0 {
				f.errors[method] = append(queue[:i:i], queue[i+1:]...)
			}
		}
		if ie.after {
			after = ie.err
		} else {
			before = ie.err
		}
		break
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
