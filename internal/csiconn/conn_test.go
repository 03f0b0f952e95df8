package csiconn

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// A driver whose socket appears late (its container starts slower than
// csi-hub's) is waited for as long as it takes, as the sidecars wait: the
// backoff stops growing at 5s but never gives up. (It used to stop after
// about 12s, the step that reached the cap.)
func TestConnectWaitsForLateDriver(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 15s")
	}
	dir, err := os.MkdirTemp("", "csiconn-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "csi.sock")
	d := fakedriver.New(fakedriver.Options{Name: "late.csi-hub.io"})
	t.Cleanup(d.StopNow)
	started := make(chan error, 1)
	time.AfterFunc(15*time.Second, func() { started <- d.Start(sock) })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	begin := time.Now()
	c, err := Connect(ctx, sock, Options{CallTimeout: time.Second})
	if err != nil {
		t.Fatalf("Connect gave up after %v: %v", time.Since(begin).Round(time.Second), err)
	}
	defer c.Close()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if c.DriverName != "late.csi-hub.io" {
		t.Errorf("driver name %q", c.DriverName)
	}
	t.Logf("connected %v after the first attempt", time.Since(begin).Round(100*time.Millisecond))
}

// The wait ends with ctx, naming the address and the last error.
func TestConnectEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := Connect(ctx, filepath.Join(t.TempDir(), "absent.sock"), Options{CallTimeout: time.Second})
	if err == nil || ctx.Err() == nil {
		t.Fatalf("Connect = %v before its context ended", err)
	}
	t.Log(err)
}
