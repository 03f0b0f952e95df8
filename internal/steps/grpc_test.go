package steps

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestServerInterceptorRecordsNodeCallsWithoutSecrets(t *testing.T) {
	r := NewRecorder(10)
	icpt := r.UnaryServerInterceptor()
	req := &csi.NodeStageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: "/stage",
		Secrets: map[string]string{"password": "hunter2"}}
	info := &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Node/NodeStageVolume"}
	if _, err := icpt(context.Background(), req, info, func(ctx context.Context, req any) (any, error) {
		return &csi.NodeStageVolumeResponse{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	fail := status.Error(codes.Internal, "mkfs failed")
	_, err := icpt(context.Background(), &csi.NodePublishVolumeRequest{VolumeId: "vol-1"},
		&grpc.UnaryServerInfo{FullMethod: "/csi.v1.Node/NodePublishVolume"},
		func(ctx context.Context, req any) (any, error) { return nil, fail })
	if !errors.Is(err, fail) {
		t.Fatalf("error not passed on: %v", err)
	}
	// Periodic calls that succeed are not recorded.
	_, _ = icpt(context.Background(), &csi.ProbeRequest{}, &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Identity/Probe"},
		func(ctx context.Context, req any) (any, error) { return &csi.ProbeResponse{}, nil })

	got := r.Recent(0)
	if len(got) != 2 {
		t.Fatalf("%d steps, want 2 (the Probe is not a step): %+v", len(got), got)
	}
	s := got[0]
	if s.Kind != Node || s.Action != "NodeStageVolume" || s.Result != "OK" || s.Object != "CSIVolume vol-1" || s.Controller != "kubelet" {
		t.Fatalf("stage step = %+v", s)
	}
	if strings.Contains(s.Request, "hunter2") || !strings.Contains(s.Request, "stripped") || !strings.Contains(s.Request, "/stage") {
		t.Fatalf("request not sanitized as in the logs: %s", s.Request)
	}
	if f := got[1]; f.Result != "Internal" || f.Detail != "mkfs failed" || f.Response != "" {
		t.Fatalf("failed step = %+v", f)
	}
}

func TestClientInterceptorKeepsRequestAndResponse(t *testing.T) {
	r := NewRecorder(10)
	ctx := WithObject(context.Background(), "provisioner", "PersistentVolumeClaim ns/a")
	req := &csi.CreateVolumeRequest{Name: "pvc-1", Secrets: map[string]string{"token": "s3cret"}}
	reply := &csi.CreateVolumeResponse{}
	err := r.UnaryClientInterceptor()(ctx, "/csi.v1.Controller/CreateVolume", req, reply, nil,
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
			reply.(*csi.CreateVolumeResponse).Volume = &csi.Volume{VolumeId: "vol-9"}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	s := r.Recent(0)[0]
	if strings.Contains(s.Request, "s3cret") || !strings.Contains(s.Request, "pvc-1") || !strings.Contains(s.Response, "vol-9") {
		t.Fatalf("request %q response %q", s.Request, s.Response)
	}
}
