package app

import (
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-hub/csi-hub/internal/csiconn"
	"github.com/csi-hub/csi-hub/internal/testutil"
)

// caps is a driver with exactly these controller capabilities.
var caps = testutil.ControllerCaps

func TestSelectByCapabilities(t *testing.T) {
	const (
		create   = csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME
		expand   = csi.ControllerServiceCapability_RPC_EXPAND_VOLUME
		modify   = csi.ControllerServiceCapability_RPC_MODIFY_VOLUME
		snapshot = csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT
	)
	cases := []struct {
		name      string
		requested []string
		caps      csiconn.Capabilities
		want      []string
		wantErr   string
	}{
		{name: "everything", caps: caps(create, expand, snapshot), want: []string{"provisioner", "attacher", "resizer", "snapshotter"}},
		{name: "attacher always runs (trivial attach without PUBLISH_UNPUBLISH)", caps: caps(), want: []string{"attacher"}},
		{name: "modify alone calls for the resizer", caps: caps(create, modify), want: []string{"provisioner", "attacher", "resizer"}},
		{name: "requested subset", requested: []string{"attacher", "provisioner"}, caps: caps(create, snapshot), want: []string{"provisioner", "attacher"}},
		{name: "unknown controller", requested: []string{"provisoner"}, caps: caps(create), wantErr: `unknown controller "provisoner"`},
		{name: "requested without capability", requested: []string{"snapshotter"}, caps: caps(create), wantErr: "snapshotter needs the CSI capability CREATE_DELETE_SNAPSHOT"},
		{name: "resizer without expand or modify", requested: []string{"resizer"}, caps: caps(create), wantErr: "EXPAND_VOLUME or MODIFY_VOLUME"},
		{name: "health monitor by GET_VOLUME_HEALTH (CSI 1.13)", caps: caps(create, csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH),
			want: []string{"provisioner", "attacher", "health-monitor"}},
		{name: "health monitor by VOLUME_CONDITION (11, CSI < 1.13) with LIST_VOLUMES", caps: caps(create, 11, csi.ControllerServiceCapability_RPC_LIST_VOLUMES),
			want: []string{"provisioner", "attacher", "health-monitor"}},
		{name: "VOLUME_CONDITION without LIST_VOLUMES or GET_VOLUME", caps: caps(create, 11), want: []string{"provisioner", "attacher"}},
		{name: "health monitor turned off", requested: []string{"provisioner", "attacher"}, caps: caps(create, csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH),
			want: []string{"provisioner", "attacher"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Select(tc.requested, tc.caps, "d.example.com")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Select = %v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("Select = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
