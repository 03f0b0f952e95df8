package fakedriver

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// BenchmarkCreateDeleteVolume measures one CreateVolume + DeleteVolume round
// trip over the unix socket, in memory and with the state file (rewritten on
// every change, so its cost grows with the number of volumes held).
func BenchmarkCreateDeleteVolume(b *testing.B) {
	for _, tc := range []struct {
		name      string
		stateFile bool
		resident  int
	}{{"memory", false, 0}, {"statefile", true, 0}, {"statefile-100-resident", true, 100}} {
		b.Run(tc.name, func(b *testing.B) {
			opts := Options{}
			if tc.stateFile {
				opts.StateFile = filepath.Join(b.TempDir(), "state.json")
			}
			d := New(opts)
			sock := socketPath(b)
			if err := d.Start(sock); err != nil {
				b.Fatal(err)
			}
			defer d.StopNow()
			c := dial(b, sock).ctrl
			for i := range tc.resident {
				if _, err := d.AddVolume(Volume{Name: fmt.Sprint("resident-", i), CapacityBytes: mib}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				resp, err := c.CreateVolume(b.Context(), createReq(fmt.Sprint("bench-", i), mib))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.DeleteVolume(b.Context(), &csi.DeleteVolumeRequest{VolumeId: resp.GetVolume().GetVolumeId()}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
