package testutil

import (
	"context"
	"fmt"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// CSIController is a scripted csi.ControllerClient for table-driven sync
// tests: it records every call, and answers each with the next error
// scripted for its method (Fail), else a plain success. Only the calls the
// attacher and resizer make are implemented; any other panics (the embedded
// nil client), so an unexpected call cannot go unnoticed.
type CSIController struct {
	csi.ControllerClient

	// Before, when set, runs at the start of every call (e.g. to cancel the
	// caller's context, as a shutdown in the middle of a call does).
	Before func(method string)

	mu    sync.Mutex
	calls []CSICall
	errs  map[string][]error
}

// CSICall is one recorded call.
type CSICall struct {
	Method  string
	Request proto.Message
}

// Fail makes the next call of method return err; several queue up in order.
func (f *CSIController) Fail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.errs == nil {
		f.errs = map[string][]error{}
	}
	f.errs[method] = append(f.errs[method], err)
}

// Calls returns the calls so far.
func (f *CSIController) Calls() []CSICall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]CSICall(nil), f.calls...)
}

// Methods returns the method names of the calls so far, in order.
func (f *CSIController) Methods() []string {
	var out []string
	for _, c := range f.Calls() {
		out = append(out, c.Method)
	}
	return out
}

func (f *CSIController) call(method string, req proto.Message) error {
	if f.Before != nil {
		f.Before(method)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, CSICall{Method: method, Request: proto.Clone(req)})
	if q := f.errs[method]; len(q) > 0 {
		f.errs[method] = q[1:]
		return q[0]
	}
	return nil
}

// ControllerPublishVolume answers with publish context {"devicePath": "/dev/fake-<volume>"}.
func (f *CSIController) ControllerPublishVolume(_ context.Context, req *csi.ControllerPublishVolumeRequest, _ ...grpc.CallOption) (*csi.ControllerPublishVolumeResponse, error) {
	if err := f.call("ControllerPublishVolume", req); err != nil {
		return nil, err
	}
	return &csi.ControllerPublishVolumeResponse{PublishContext: map[string]string{"devicePath": "/dev/fake-" + req.GetVolumeId()}}, nil
}

// ControllerUnpublishVolume succeeds unless scripted to fail.
func (f *CSIController) ControllerUnpublishVolume(_ context.Context, req *csi.ControllerUnpublishVolumeRequest, _ ...grpc.CallOption) (*csi.ControllerUnpublishVolumeResponse, error) {
	if err := f.call("ControllerUnpublishVolume", req); err != nil {
		return nil, err
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

// ControllerExpandVolume answers with the required size and no node expansion.
func (f *CSIController) ControllerExpandVolume(_ context.Context, req *csi.ControllerExpandVolumeRequest, _ ...grpc.CallOption) (*csi.ControllerExpandVolumeResponse, error) {
	if err := f.call("ControllerExpandVolume", req); err != nil {
		return nil, err
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: req.GetCapacityRange().GetRequiredBytes()}, nil
}

// ControllerModifyVolume succeeds unless scripted to fail.
func (f *CSIController) ControllerModifyVolume(_ context.Context, req *csi.ControllerModifyVolumeRequest, _ ...grpc.CallOption) (*csi.ControllerModifyVolumeResponse, error) {
	if err := f.call("ControllerModifyVolume", req); err != nil {
		return nil, err
	}
	return &csi.ControllerModifyVolumeResponse{}, nil
}

// String lists the calls, for failure messages.
func (f *CSIController) String() string { return fmt.Sprint(f.Methods()) }
