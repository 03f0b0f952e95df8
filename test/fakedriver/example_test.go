package fakedriver_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// A typical integration test: start the driver, make the first CreateVolume
// fail, then check what the caller sent and what the backend holds.
func Example() {
	dir, _ := os.MkdirTemp("", "fakedriver-example")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "csi.sock")

	d := fakedriver.New(fakedriver.Options{})
	if err := d.Start(sock); err != nil {
		panic(err)
	}
	defer d.Stop()
	d.InjectError("CreateVolume", codes.ResourceExhausted, "pool busy", 1)

	conn, _ := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	ctrl := csi.NewControllerClient(conn)
	req := &csi.CreateVolumeRequest{
		Name:          "pvc-1234",
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}},
	}
	_, err := ctrl.CreateVolume(context.Background(), req)
	fmt.Println("first:", status.Code(err))
	resp, err := ctrl.CreateVolume(context.Background(), req)
	fmt.Println("retry:", status.Code(err), resp.GetVolume().GetCapacityBytes())

	last, _ := fakedriver.LastRequest[*csi.CreateVolumeRequest](d)
	fmt.Println("calls:", d.Calls("CreateVolume"), "last name:", last.GetName(), "volumes:", len(d.Volumes()))
	// Output:
	// first: ResourceExhausted
	// retry: OK 1048576
	// calls: 2 last name: pvc-1234 volumes: 1
}
