package main

import (
	"strings"
	"testing"
	"time"
)

func TestRunRejectsBadFlags(t *testing.T) {
	good := options{endpoint: "unix://" + t.TempDir() + "/csi.sock", mode: "controller", nodeID: "n1",
		driverName: "block.csi-hub.io", poolDir: t.TempDir()}
	cases := []struct {
		name string
		edit func(*options)
		want string
	}{
		{"mode", func(o *options) { o.mode = "storage" }, "--mode"},
		{"node id", func(o *options) { o.nodeID = "" }, "--node-id"},
		{"driver name", func(o *options) { o.driverName = "" }, "--driver-name"},
		{"capacity syntax", func(o *options) { o.poolCapacity = "ten gigs" }, "--pool-capacity"},
		{"capacity sign", func(o *options) { o.poolCapacity = "-1Gi" }, "--pool-capacity"},
		{"pool dir", func(o *options) { o.poolDir = "" }, "--pool-dir"},
		{"endpoint", func(o *options) { o.endpoint = "tcp://127.0.0.1:9" }, "unix://"},
		{"transport", func(o *options) { o.transport.name = "iscsi" }, "--transport"},
		{"nvme zone", func(o *options) { o.transport.name = "nvme" }, "--nvme-zone"},
		{"nvme listen", func(o *options) { o.transport = transportOptions{name: "nvme", nvmeZone: "z1"} }, "--nvme-listen-address"},
		{"nvme ctrl loss timeout", func(o *options) {
			o.mode, o.transport = "node", transportOptions{name: "nvme", nvmeZone: "z1", nvmeCtrlLoss: 1500 * time.Millisecond}
		}, "--nvme-ctrl-loss-timeout"},
		{"nvme reconnect delay", func(o *options) {
			o.mode, o.transport = "node", transportOptions{name: "nvme", nvmeZone: "z1", nvmeReconnectDelay: -time.Second}
		}, "--nvme-reconnect-delay"},
		{"node-local pool without the node", func(o *options) { o.nodeLocalPool = true }, "--node-local-pool needs --mode=all"},
		{"node-local pool over nvme", func(o *options) {
			o.mode, o.nodeLocalPool, o.transport = "all", true, transportOptions{name: "nvme", nvmeZone: "z1"}
		}, "--transport=loop"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			err := run(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
