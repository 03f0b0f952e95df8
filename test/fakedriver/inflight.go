package fakedriver

import (
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/proto"
)

// inflight tracks the objects that mutating calls are working on, for
// Options.AbortConcurrent: real drivers refuse a second operation on an
// object whose first one has not finished, with Aborted.
type inflight struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (f *inflight) begin(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys[key] {
		return false
	}
	if f.keys == nil {
		f.keys = map[string]bool{}
	}
	f.keys[key] = true
	return true
}

func (f *inflight) end(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys, key)
}

// operationKey names the object a mutating call works on; "" for reads and
// for requests that lack the identifying field (validation rejects those).
func operationKey(req proto.Message) string {
	var kind, id string
	switch r := req.(type) {
	case *csi.CreateVolumeRequest:
		kind, id = "volume name", r.GetName()
	case *csi.CreateSnapshotRequest:
		kind, id = "snapshot name", r.GetName()
	case *csi.DeleteSnapshotRequest:
		kind, id = "snapshot", r.GetSnapshotId()
	case *csi.DeleteVolumeRequest, *csi.ControllerExpandVolumeRequest, *csi.ControllerModifyVolumeRequest,
		*csi.ControllerPublishVolumeRequest, *csi.ControllerUnpublishVolumeRequest,
		*csi.NodeStageVolumeRequest, *csi.NodeUnstageVolumeRequest,
		*csi.NodePublishVolumeRequest, *csi.NodeUnpublishVolumeRequest, *csi.NodeExpandVolumeRequest:
		kind, id = "volume", r.(interface{ GetVolumeId() string }).GetVolumeId()
	}
	if id == "" {
		return ""
	}
	return kind + " " + id
}
