package steps

import (
	"context"
	"fmt"
	"time"

	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// UnaryClientInterceptor records every CSI call as a step of the object in ctx.
func (r *Recorder) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		st, _ := status.FromError(err)
		detail := ""
		if err != nil {
			detail = st.Message()
		}
		r.Record(ctx, Step{Kind: CSI, Action: shortMethod(method), Result: st.Code().String(),
			Detail: detail, Duration: time.Since(start), Time: start,
			Request: sanitized(req), Response: sanitizedReply(reply, err)})
		return err
	}
}

// UnaryServerInterceptor records every call a CSI server serves as a Node step
// (the driver's side of the kubelet's calls), attributed to "CSIVolume <id>"
// when the request names a volume.
func (r *Recorder) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		action := shortMethod(info.FullMethod)
		if periodic[action] && err == nil {
			return resp, err // probes and stats polls would drown the volume steps
		}
		st, _ := status.FromError(err)
		s := Step{Kind: Node, Controller: "kubelet", Action: action, Result: st.Code().String(),
			Duration: time.Since(start), Time: start, Request: sanitized(req), Response: sanitizedReply(resp, err)}
		if err != nil {
			s.Detail = st.Message()
		}
		if v, ok := req.(interface{ GetVolumeId() string }); ok && v.GetVolumeId() != "" {
			s.Object = VolumeObject(v.GetVolumeId())
		}
		r.Record(ctx, s)
		return resp, err
	}
}

// periodic are calls the kubelet and probes repeat all the time.
var periodic = map[string]bool{"Probe": true, "NodeGetCapabilities": true, "NodeGetVolumeStats": true,
	"GetPluginInfo": true, "GetPluginCapabilities": true, "NodeGetInfo": true}

// VolumeObject names a CSI volume (a PV's spec.csi.volumeHandle) in steps.
func VolumeObject(handle string) string { return "CSIVolume " + handle }

// maxMessage bounds a stored message: the ring keeps thousands of steps.
const maxMessage = 4096

func sanitized(m any) string {
	if m == nil {
		return ""
	}
	s := fmt.Sprint(protosanitizer.StripSecrets(m))
	if len(s) > maxMessage {
		s = s[:maxMessage] + "…"
	}
	return s
}

func sanitizedReply(m any, err error) string {
	if err != nil {
		return ""
	}
	return sanitized(m)
}

// shortMethod turns "/csi.v1.Controller/CreateVolume" into "CreateVolume".
func shortMethod(m string) string {
	for i := len(m) - 1; i >= 0; i-- {
		if m[i] == '/' {
			return m[i+1:]
		}
	}
	return m
}
