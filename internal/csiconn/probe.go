package csiconn

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ProbeOnce dials address afresh, calls Probe and hangs up, as livenessprobe
// does for every /healthz: a driver that stopped accepting connections or
// answering fails within ctx's deadline, whatever state a long-lived
// connection is in.
func ProbeOnce(ctx context.Context, address string, interceptors ...grpc.UnaryClientInterceptor) error {
	path := strings.TrimPrefix(address, "unix://")
	cc, err := grpc.NewClient("passthrough:///"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}),
		grpc.WithChainUnaryInterceptor(interceptors...))
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", address, err)
	}
	defer cc.Close()
	resp, err := csi.NewIdentityClient(cc).Probe(ctx, &csi.ProbeRequest{})
	if err != nil {
		return fmt.Errorf("CSI probe: %w", err)
	}
	if r := resp.GetReady(); r != nil && !r.GetValue() {
		return fmt.Errorf("CSI probe: driver responded but is not ready")
	}
	return nil
}
